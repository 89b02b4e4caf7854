"""Tasks every flow uses: publishing the report (files + artifacts) and job metrics."""

import logging
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from regkeeper.report import Report
from regkeeper.retry import is_transient


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry a task only for a failure THE retry decision calls
    transient (regkeeper.retry.is_transient) that no layer below retried already. An error with
    ``attempts`` set (the transport's or the Kubernetes reader's retries ran out) is final, so
    retries never multiply across layers; auth errors, 404s, 500s, refusals and config errors
    fail at once."""
    try:
        state.result()
    except Exception as e:  # noqa: BLE001 - classified, never swallowed
        return is_transient(e) and not getattr(e, "attempts", None)
    return False


# THE task retry preset: every task that retries uses it (a task is a batch: worth one more go
# only when nothing below has retried the failure already).
RETRY: dict[str, Any] = dict(
    retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_transient, cache_policy=NO_CACHE
)


def with_reports(exc: BaseException, reports: list) -> BaseException:
    """Attach the reports a failed or refused run published to the exception that ends it, so a
    caller (the nightly flow) reads them from the run's result instead of from disk."""
    exc.reports = [r.to_dict() if isinstance(r, Report) else r for r in reports]  # type: ignore[attr-defined]
    return exc


def reports_of(outcome) -> list[dict]:
    """The report dicts of a run: from a flow's return value, or from the exception it raised."""
    if isinstance(outcome, BaseException):
        return list(getattr(outcome, "reports", None) or [])
    if isinstance(outcome, dict):
        if outcome.get("reports"):
            return list(outcome["reports"])
        if outcome.get("flow") and "summary" in outcome:
            return [outcome]
    return []


def gather(batches: list, futures: list) -> list[tuple]:
    """``(batch, result, error)`` for submitted per-batch tasks, in order: a failed batch
    (after its retries) does not stop the others; the caller reports it."""
    out: list[tuple[Any, Any, BaseException | None]] = []
    for b, f in zip(batches, futures, strict=True):
        try:
            out.append((b, f.result(), None))
        except Exception as e:  # noqa: BLE001 - attributed to the batch by the caller
            out.append((b, None, e))
    return out


def flow_run_url(run_id) -> str | None:
    """The Prefect UI page of a flow run (``<ui>/runs/flow-run/<id>``) when a server is known:
    ``PREFECT_UI_URL``, else derived from ``PREFECT_API_URL``. None in Prefect's local mode (a
    temporary server whose UI is gone once the run ends) or without an id."""
    if not run_id:
        return None
    try:
        from prefect.settings import PREFECT_UI_URL

        ui = PREFECT_UI_URL.value()
    except Exception:  # noqa: BLE001 - no settings: no link
        return None
    return f"{str(ui).rstrip('/')}/runs/flow-run/{run_id}" if ui else None


def flow_run_label(run_id: str) -> str:
    """What a link to a flow run reads: its name (``tangerine-octopus``, as the UI shows it)
    when the server answers, else the first 8 characters of its id."""
    try:
        from uuid import UUID

        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as c:
            return c.read_flow_run(UUID(str(run_id))).name or run_id[:8] + "…"
    except Exception:  # noqa: BLE001 - a label only
        return run_id[:8] + "…"


def logger():
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run context
        return logging.getLogger("regkeeper")


@task(name="publish-report", retries=0)
def publish_report(report: Report, reports_dir: str, table_rows: int = 200) -> dict:
    """Write CSV/HTML/JSON report files and create the run's artifacts: ``<key>`` (markdown:
    the headline first, then figures, notes and the first rows) and ``<key>-table`` (the main
    table, readable cells; one "(none)" row when it is empty)."""
    if report.finished is None:
        report.finish()
    paths = report.write(reports_dir)
    key = report.artifact_key
    create_markdown_artifact(
        markdown=report.markdown(),
        key=key,
        description=f"{report.flow} on {report.registry}: {report.status_text}",
    )
    rows, description = report.artifact_table(table_rows)
    create_table_artifact(table=rows, key=f"{key}-table", description=description)
    logger().info("report written: %s", paths.get("html"))
    return paths


@task(name="push-job-metrics", **RETRY)
def push_job_metrics(
    pushgateway: str | None, flow: str, registry: str, success: bool, values: dict | None = None
) -> bool:
    """Job metrics every flow updates (last success, bytes reclaimed, items replicated/failed)."""
    if not pushgateway:
        return False
    from regkeeper.metrics import RunMetrics

    v = values or {}
    m = RunMetrics(flow, registry)
    if "bytes_reclaimed" in v:
        m.set_bytes_reclaimed(int(v["bytes_reclaimed"] or 0))
    if "items_deleted" in v:
        m.set_items_deleted(int(v["items_deleted"] or 0))
    # replicate: {"target": name, "items_replicated": n, "replication_lag_tags": n}, or
    # per-target mappings {"items_replicated": {target: n}, "replication_lag": {target: n}}
    rep, lag = v.get("items_replicated"), v.get("replication_lag", v.get("replication_lag_tags"))
    if not isinstance(rep, dict) and rep is not None:
        rep = {v.get("target", ""): rep}
    if not isinstance(lag, dict) and lag is not None:
        lag = {v.get("target", ""): lag}
    for target, n in (rep or {}).items():
        m.set_items_replicated(target, int(n))
    for target, n in (lag or {}).items():
        m.set_replication_lag(target, int(n), source=registry)
    m.set_items_failed(int(v.get("items_failed") or 0))
    m.finish(success)
    m.push(pushgateway)
    return True


def report_job_metrics(ctx, flow: str, registry: str, success: bool, values: dict | None = None) -> None:
    """Push a run's job metrics when ``capacity.pushgateway`` is configured. Never fails the run."""
    cap = ctx.config.capacity
    if not cap or not cap.pushgateway:
        return
    try:
        push_job_metrics(cap.pushgateway, flow, registry, success, values or {})
    except Exception as e:  # noqa: BLE001 - metrics never fail a run
        logger().warning("job metrics not pushed: %s", e)
