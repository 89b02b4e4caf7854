"""nightly: backup -> gc -> expire -> replicate -> capacity, each as a subflow, then one combined
report linking every job's own report.

One job failing (or refusing) does not stop the next: backup failing must not keep gc from
running, and a gc refusal must not keep capacity from alerting. A job whose config section is
missing is skipped and the combined report says so. The nightly run ends Failed when any job
failed or refused, after all of them ran.
"""

import os
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

from prefect import flow
from pydantic import Field

from flows.jobs import JOBS, NIGHTLY_ORDER, flow_of
from flows.params import ConfigPath
from flows.runner import RegkeeperTaskRunner
from regkeeper.config import Config, load_config
from regkeeper.context import resolve_config_path
from regkeeper.errors import RefusedError, RegkeeperError
from regkeeper.report import Link, Report, _fmt
from regkeeper.util import scrub
from tasks.common import flow_run_label, flow_run_url, logger, publish_report, reports_of, with_reports
from tasks.recovery import add_notes, begin_run_config

JobName = Literal["backup", "gc", "expire", "replicate", "capacity"]
KEY_FIGURES = 5  # summary items per job shown in the combined report


# The figures worth a glance per job, in order; other numeric figures fill up to KEY_FIGURES.
PREFERRED = {
    "backup": ("snapshot", "repositories", "tags", "objects written", "snapshots pruned"),
    "gc": (
        "tags deleted",
        "tags to delete",
        "in use (kept)",
        "manifests deleted",
        "manifests to delete",
        "bytes freed (measured)",
        "bytes freed (preview)",
        "bytes to hold in quarantine (freed at release)",
    ),
    "expire": (
        "tags deleted",
        "tags to delete",
        "expired but in use",
        "repositories removed",
        "repositories to remove",
        "bytes freed (measured)",
        "bytes freed (preview)",
        "bytes to hold in quarantine (freed at release)",
    ),
    "replicate": ("target", "copied", "to copy (plan)", "in sync (skipped)", "failed", "lag (tags)"),
    "capacity": ("level", "usage ratio", "storage bytes", "days to full"),
}


def _figures(job: str, summary: dict) -> str:
    keys = [k for k in PREFERRED.get(job, ()) if k in summary and summary[k] not in (None, "", [])]
    for measured, planned in (
        ("bytes freed (measured)", "bytes freed (preview)"),
        ("repositories removed", "repositories to remove"),
    ):
        if measured in keys and planned in keys:
            keys.remove(planned)
    keys = keys[:KEY_FIGURES]
    for k, v in summary.items():
        if len(keys) >= KEY_FIGURES:
            break
        if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool) and "seconds" not in k:
            keys.append(k)
    return "; ".join(f"{k}: {_fmt(k, summary[k])}" for k in keys)


def _run_job(job: str, kw: dict) -> list[dict]:
    """Run one job as a subflow; never raises. Returns one row per report the run published
    (at least one), read from the subflow's result or from the exception it ended with."""
    log = logger()
    t0 = time.time()
    status, error, state, outcome = "ok", None, None, None
    try:
        state = flow_of(job)(**kw, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if state.is_completed():
            status = "dry-run" if kw.get("dry_run") else "ok"
        else:
            status = "refused" if isinstance(outcome, RefusedError) else "failed"
            error = str(outcome) if isinstance(outcome, BaseException) else (state.message or state.name)
    except ImportError as e:
        status, error = "failed", f"{JOBS[job].module} cannot be imported: {e}"
    except Exception as e:  # noqa: BLE001 - a job's failure is recorded; the next job runs
        status = "refused" if isinstance(e, RefusedError) else "failed"
        error, outcome = f"{type(e).__name__}: {e}", e
    seconds = round(time.time() - t0, 2)
    if error:
        error = scrub(error)  # exception text goes into reports and artifacts
        log.warning("nightly: %s %s: %s", job, status, error)
    else:
        log.info("nightly: %s %s in %.1fs", job, status, seconds)
    run_id = state.state_details.flow_run_id if state is not None and state.state_details else None
    base = {"job": job, "status": status, "seconds": seconds, "flow run": str(run_id or "")}
    reports = reports_of(outcome)
    if not reports:
        return [
            {
                **base,
                "registry": kw.get("registry") or "",
                "key figures": "",
                "report": "",
                "error": error or "",
            }
        ]
    rows = []
    for r in reports:
        st = r.get("status") or status
        if status in ("failed", "refused") and st in ("ok", "dry-run"):
            st = status  # the job failed after writing a report that looked fine
        rows.append(
            {
                **base,
                "status": st,
                "registry": r.get("registry", ""),
                "key figures": _figures(job, r.get("summary") or {}),
                "first line": next(iter(r.get("headline") or []), ""),
                "report": (r.get("files") or {}).get("html", ""),
                "error": error or "",
            }
        )
    return rows


def _links_html(rows: list[dict], nightly_html_dir: Path) -> str:
    import html

    e = html.escape
    items = []
    for r in rows:
        label = f"{r['job']}" + (f" ({r['registry']})" if r.get("registry") else "")
        if r.get("report"):
            href = os.path.relpath(r["report"], nightly_html_dir)
            link = f"<a href='{e(href)}'>{e(label)}</a>"
        else:
            link = e(label)
        extra = r.get("key figures") or r.get("error") or ""
        url = flow_run_url(r.get("flow run"))
        run = f" · <a href='{e(url)}'>flow run in Prefect</a>" if url else ""
        items.append(
            f"<li>{link}: <b class='{e(r['status'])}'>{e(r['status'])}</b>"
            + (f" — {e(extra)}" if extra else "")
            + run
            + "</li>"
        )
    return "<h2>Job reports</h2><ul>" + "".join(items) + "</ul>"


def _job_table_rows(rows: list[dict]) -> list[dict]:
    """The jobs table as people read it: each job's flow run a link into the Prefect UI when a
    server is known (the id otherwise)."""
    out = []
    for r in rows:
        run_id = r.get("flow run") or ""
        url = flow_run_url(run_id)
        out.append(
            {
                **r,
                "flow run": Link(flow_run_label(run_id) if url else run_id, url, run_id) if run_id else "",
            }
        )
    return out


def _run_jobs(
    cfg: Config,
    wanted: set[str],
    report: Report,
    *,
    registry: Optional[str],
    dry_run: bool,
    force: bool,
    config_path: str,
) -> list[dict]:
    """The wanted jobs in the fixed order, each as a subflow (a failed one does not stop the
    rest); a job its config does not set up is skipped and noted. One row per report."""
    log = logger()
    rows: list[dict] = []
    for job in NIGHTLY_ORDER:
        if job not in wanted:
            continue
        why = JOBS[job].why_skipped(cfg)
        if why:
            report.note(f"{job}: skipped ({why})")
            log.info("nightly: %s skipped: %s", job, why)
            rows.append(
                {
                    "job": job,
                    "status": "skipped",
                    "seconds": 0,
                    "flow run": "",
                    "registry": "",
                    "key figures": "",
                    "report": "",
                    "error": why,
                }
            )
            continue
        rows.extend(
            _run_job(
                job,
                JOBS[job].kwargs(registry=registry, dry_run=dry_run, force=force, config_path=config_path),
            )
        )
    return rows


def _summarize_jobs(report: Report, rows: list[dict]) -> list[tuple[str, str]]:
    """Count the jobs by status into the summary and note each one that failed or refused;
    returns those ``(job, status)``. A job's status is the worst of its rows (one row per
    report it wrote)."""
    rank = {"skipped": 0, "ok": 1, "dry-run": 1, "refused": 2, "failed": 3}
    job_status: dict[str, str] = {}
    job_seconds: dict[str, float] = {}
    job_error: dict[str, str] = {}
    for r in rows:
        if rank[r["status"]] >= rank.get(job_status.get(r["job"], "skipped"), 0):
            job_status[r["job"]] = r["status"]
        job_seconds[r["job"]] = r["seconds"]
        if r.get("error") and r["status"] != "skipped":
            job_error.setdefault(r["job"], r["error"])
    statuses = list(job_status.values())
    report.summary["jobs run"] = sum(1 for s in statuses if s != "skipped")
    report.summary["jobs ok"] = sum(1 for s in statuses if s in ("ok", "dry-run"))
    report.summary["jobs failed"] = statuses.count("failed")
    report.summary["jobs refused"] = statuses.count("refused")
    report.summary["jobs skipped"] = statuses.count("skipped")
    report.summary["seconds"] = round(sum(job_seconds.values()), 1)
    bad = [(j, s) for j, s in job_status.items() if s in ("failed", "refused")]
    for j, s in bad:
        report.note(f"{j} {s}: {job_error.get(j) or 'see its report'}")
    return bad


def _headline(report: Report, rows: list[dict], bad: list[tuple[str, str]], dry_run: bool) -> None:
    """What a reader must know first: how many jobs ran and which failed or refused, and why;
    then one line per job with its own headline."""
    s = report.summary
    ran = f"{s['jobs ok']} of {s['jobs run']} job(s) ok" + (" (dry run)" if dry_run else "")
    if s["jobs skipped"]:
        ran += f", {s['jobs skipped']} skipped"
    report.lead(ran + ("; " + ", ".join(f"{j} {st}" for j, st in bad) if bad else "."))
    for r in rows:
        if r["status"] == "skipped":
            continue
        what = (
            r.get("error")
            if r["status"] in ("failed", "refused")
            else (r.get("first line") or r.get("key figures"))
        )
        who = r["job"] + (f" ({r['registry']})" if r.get("registry") else "")
        report.lead(f"{who}: {r['status']}" + (f" — {what}" if what else ""))


@flow(
    name="nightly",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def nightly(
    registry: Annotated[
        Optional[str],
        Field(
            description="Registry name for backup, gc, expire and capacity "
            "(default: each job's configured one)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, Field(description="Every job plans and reports only; nothing is changed")
    ] = False,
    force: Annotated[
        bool, Field(description="Override the blast-radius cap of gc, expire and replicate")
    ] = False,
    jobs: Annotated[
        Optional[list[JobName]],
        Field(
            description="Which jobs to run, in the fixed order backup, gc, "
            "expire, replicate, capacity (default: all)"
        ),
    ] = None,
    config_path: ConfigPath = None,
) -> dict:
    """Every job in order, as subflows; one failing does not stop the rest. Ends with a
    combined report (reports/nightly/) linking each job's report.

    Args:
        registry: registry name for backup, gc, expire and capacity (default: each job's configured one).
        dry_run: every job plans and reports only; nothing is changed.
        force: override the blast-radius cap of gc, expire and replicate.
        jobs: which jobs to run (default: all five); the order stays backup, gc, expire, replicate, capacity.
        config_path: the config file.
    """
    path = str(resolve_config_path(config_path))
    cfg = load_config(path)  # a bad config fails the run at once, naming the key
    notes = begin_run_config(cfg, "nightly")
    reports_dir = cfg.reports_dir()
    wanted: set[str] = set(jobs) if jobs else set(NIGHTLY_ORDER)
    report = Report(flow="nightly", registry=registry or "all", title="regkeeper nightly")
    add_notes(report, notes)
    rows = _run_jobs(cfg, wanted, report, registry=registry, dry_run=dry_run, force=force, config_path=path)
    for job in sorted(set(NIGHTLY_ORDER) - wanted, key=NIGHTLY_ORDER.index):
        report.note(f"{job}: not selected (jobs parameter)")

    bad = _summarize_jobs(report, rows)
    report.add_table(
        "jobs",
        _job_table_rows(rows),
        ["job", "registry", "status", "flow run", "error", "key figures", "seconds", "report"],
        brief=["job", "registry", "status", "flow run", "error"],  # key figures: in the headline
    )
    _headline(report, rows, bad, dry_run)
    report.extra_html = _links_html(rows, reports_dir / "nightly")
    report.finish("failed" if bad else ("dry-run" if dry_run else "ok"))
    publish_report(report, str(reports_dir))
    result = report.to_dict()
    result["jobs"] = rows
    if bad:
        names = ", ".join(f"{j} ({s})" for j, s in bad)
        where = report.paths.get("html")
        cls = RefusedError if all(s == "refused" for _, s in bad) else RegkeeperError
        raise with_reports(cls(f"nightly: {names}; every other job ran; report: {where}"), [result])
    return result
