"""replicate: copy images from a primary registry to replicas in other regions; skip what is
already there. Every 15 minutes by default; one concurrent run per rule.

plan (scope, then one task per batch of repositories: tags lists + HEADs, no writes) ->
(dry run: report the plan and stop) -> copy (one task per batch of repositories; items retried
inside) -> delete extraneous (opt-in, under the cap) -> verify (read back every copied tag the
target did not confirm with its digest when it took the PUT, and the referrers copied: listed
by the target's discovery) ->
report (``reports/replicate/``, artifact ``replication-<target>``) per (rule, target)."""

import time
from contextlib import ExitStack
from datetime import timedelta
from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.params import ConfigPath, ReplicationRule
from flows.runner import RegkeeperTaskRunner
from regkeeper import replicate as core
from regkeeper.context import RunContext
from regkeeper.errors import RefusedError, RegkeeperError
from regkeeper.util import batch_label, batches, utcnow
from tasks.common import gather, logger, publish_report, report_job_metrics, with_reports
from tasks.recovery import add_notes, begin_run
from tasks.replicate import copy_batch, delete_batch, plan_batch, scope, verify_batch

SCHEDULE_INTERVAL = timedelta(minutes=15)  # the default schedule (deployments use it)
PLAN_BATCH = 50  # repositories per plan task
COPY_BATCH = 25  # repositories (with something to copy) per copy task
LOCK_WAIT_SECONDS = 30  # how long a run waits for another run of the same rule to finish


def _rule_lock(stack: ExitStack, ctx: RunContext, rule_name: str) -> tuple[str | None, str | None]:
    """Hold the rule's lease ``replicate-rule-<name>`` (``regkeeper.runstate``) for the run. A run
    killed while holding it is gone once its pid is dead on this host or its heartbeat expired:
    the next run takes the lease over and says so. A live holder keeps it: after waiting
    LOCK_WAIT_SECONDS this run refuses. Returns (why the run must not go ahead, or None; the
    takeover note, or None)."""
    import re

    name = "replicate-rule-" + re.sub(r"[^a-z0-9-]+", "-", rule_name.lower()).strip("-")
    try:
        lease = ctx.run_state("replicate").lease(name, {"rule": rule_name})
        got = lease.acquire(wait=LOCK_WAIT_SECONDS)
    except RegkeeperError as e:  # the state directory cannot be written: run unguarded, say so
        logger().warning("rule %s: lease %s unavailable (%s): running without it", rule_name, name, e)
        return None, f"lease {name} unavailable ({e}): not guarded against a concurrent run"
    if not got.ok:
        who = f"held by {got.holder.describe()}; " if got.holder else ""
        return (
            f"another replicate run of rule {rule_name!r} is still in progress ({who}waited "
            f"{LOCK_WAIT_SECONDS}s for lease {name!r}); this run did nothing"
        ), None
    stack.enter_context(lease.held())
    note = got.takeover_note(f"lease {name}")
    if note:
        logger().warning("rule %s: %s", rule_name, note)
    return None, note


def _delete_extraneous(
    ctx: RunContext, rule, target: str, result: core.ReplicationResult, results: dict
) -> str | None:
    """deleteExtraneous through the one delete path, one task per batch of repositories; the
    outcome is recorded per tag in ``results``. The first batch runs alone: on a target with
    deletes disabled (405) it stops there and no other batch sends a DELETE. Returns why deletes
    stopped early, or None."""
    dbatches = batches(core.deletable_plans(result.plan.repositories), COPY_BATCH)
    q = ctx.quarantine(target)
    stopped = None
    for group in (dbatches[:1], dbatches[1:]):
        if stopped:
            for b in group:
                core.record_deletes(b, results, core.not_attempted(b, stopped))
            continue
        futures = [
            delete_batch.submit(ctx, rule, target, b, label=batch_label(b, lambda p: p.target_repo))
            for b in group
        ]
        for b, res, err in gather(group, futures):
            if err is not None:
                for p in b:
                    results[p.source_repo].errors.append(f"delete task failed: {err}")
                continue
            core.record_deletes(b, results, res)
            result.note_held(res, q.run if q is not None else None)
            stopped = stopped or res.stopped
    return stopped


def _replicate_target(
    ctx: RunContext, rule, target: str, *, dry_run: bool, force: bool
) -> core.ReplicationResult:
    t0 = time.perf_counter()
    src, dst = ctx.client(rule.from_), ctx.client(target)
    before = dict(dst.stats)
    repos, removed, errors = scope(ctx, rule, target, rule_name=rule.rule_name)
    # plan: one task per batch of repositories (removed ones go with the first batch)
    plan_batches = batches(repos, PLAN_BATCH) or ([[]] if removed else [])
    plan_futures = [
        plan_batch.submit(ctx, rule, target, b, removed if i == 0 else [], label=batch_label(b))
        for i, b in enumerate(plan_batches)
    ]
    parts = []
    for b, part, err in gather(plan_batches, plan_futures):  # a failed batch does not stop the others
        if err is None:
            parts.append(part)
        else:
            errors.append(f"planning {batch_label(b)} failed: {err}")
    plan = core.merge_plans(rule, rule.from_, target, parts, errors)
    result = core.ReplicationResult(plan=plan, dry_run=dry_run)
    if rule.delete_extraneous:
        result.deletes_refused = core.check_delete_cap(plan, rule.max_delete_fraction, force)
    results = {p.source_repo: core.new_result(p) for p in plan.repositories}
    if not dry_run:
        rep = core.Replicator(
            src, dst, concurrency=rule.concurrency, hints_path=core.hints_file(ctx.cache.root, dst)
        )
        work = [p for p in plan.repositories if p.to_copy and not p.errors]
        copy_batches = batches(work, COPY_BATCH)
        copy_futures = [
            copy_batch.submit(ctx, rule, target, b, rep, label=batch_label(b, lambda p: p.source_repo))
            for b in copy_batches
        ]
        for b, done, err in gather(copy_batches, copy_futures):
            for r in done or []:
                results[r.source_repo] = r
            for p in b if err is not None else []:
                results[p.source_repo].failed += [(c.tag, f"copy task failed: {err}") for c in p.to_copy]
        rep.save_hints()
        if rule.delete_extraneous and not result.deletes_refused:
            result.deletes_stopped = _delete_extraneous(ctx, rule, target, result, results)
        # read back only tags whose PUT the target did not answer with their digest
        copied = [
            p
            for p in plan.repositories
            if set(results[p.source_repo].copied) - set(results[p.source_repo].confirmed)
            or (p.referrers and results[p.source_repo].referrers_copied)
        ]
        vbatches = batches(copied, PLAN_BATCH)
        verify_futures = [
            verify_batch.submit(
                ctx,
                rule,
                target,
                b,
                [results[p.source_repo] for p in b],
                label=batch_label(b, lambda p: p.source_repo),
            )
            for b in vbatches
        ]
        for b, _, err in gather(vbatches, verify_futures):
            for p in b if err is not None else []:
                results[p.source_repo].errors.append(f"verification failed: {err}")
    result.repositories = [results[p.source_repo] for p in plan.repositories]
    result.seconds = round(time.perf_counter() - t0, 3)
    after = dst.stats
    result.target_requests = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    return result


def _metrics(ctx: RunContext, source: str, target: str, result, success: bool) -> None:
    t = result.totals() if result is not None else {}
    report_job_metrics(
        ctx,
        "replicate",
        source,
        success,
        {
            "target": target,
            "items_replicated": t.get("copied", 0),
            "items_failed": t.get("failed", 0),
            "replication_lag_tags": t.get("lag", 0),
        },
    )


@flow(
    name="replicate",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def replicate(
    rule: ReplicationRule = None,
    dry_run: Annotated[
        bool, Field(description="Plan and report only: what would be copied and deleted; write nothing")
    ] = False,
    force: Annotated[bool, Field(description="Override the rule's replication[].maxDeleteFraction")] = False,
    config_path: ConfigPath = None,
) -> dict:
    """Copy what differs from each rule's source to its targets, byte for byte.

    Args:
        rule: the replication rule to run (its `name`, else `<from>-to-<to+to>`); default: all rules.
        dry_run: plan and report only; write nothing to any target.
        force: let deleteExtraneous delete more than the rule's own cap,
            ``replication[].maxDeleteFraction`` (default 0.5; gc's value does not apply).
        config_path: the config file.
    """
    log = logger()
    ctx = RunContext.load(config_path)
    try:
        notes = begin_run(ctx, "replicate")
        rules = core.select_rules(ctx.config, rule)
        pairs = [(r, t) for r in rules for t in r.to]
        targets = [t for _, t in pairs]
        reports, failures, refusals = [], [], []
        for r in rules:
            with ExitStack() as stack:
                busy, took_over = _rule_lock(stack, ctx, r.rule_name)
                for target in r.to:
                    label = target if targets.count(target) == 1 else f"{target}-{r.rule_name}"
                    started = utcnow()
                    result = error = None
                    if busy:
                        error = busy
                    else:
                        try:
                            result = _replicate_target(ctx, r, target, dry_run=dry_run, force=force)
                            log.info("%s", core.summary_line(result))
                        except RegkeeperError as e:
                            error = f"{type(e).__name__}: {e}"
                    report = core.build_report(
                        result,
                        rule=r,
                        source=r.from_,
                        target=target,
                        label=label,
                        error=error,
                        started=started,
                    )
                    add_notes(report, notes + ([took_over] if took_over else []))
                    if busy:
                        report.finish("refused")
                    publish_report(report, str(ctx.reports_dir()))
                    _metrics(ctx, r.from_, target, result, report.status in ("ok", "dry-run"))
                    reports.append(report)
                    why = "; ".join(report.notes[-3:]) or f"{report.summary.get('failed', 0)} items failed"
                    if report.status == "failed":
                        failures.append(f"{r.rule_name} -> {target}: {why}")
                    elif report.status == "refused":
                        refusals.append(f"{r.rule_name} -> {target}: {why}")
        out = _combined(reports)
        if failures:
            raise with_reports(RegkeeperError("replicate failed: " + " | ".join(failures)), reports)
        if refusals:
            raise with_reports(RefusedError("replicate refused: " + " | ".join(refusals)), reports)
        return out
    finally:
        ctx.close()


def _combined(reports: list) -> dict:
    """The flow's return value: the first report's files, summed key figures, every report."""
    order = {"failed": 3, "refused": 2, "dry-run": 1, "ok": 0}
    status = max((r.status for r in reports), key=lambda s: order.get(s, 0), default="ok")
    keys = (
        "copied",
        "in sync (skipped)",
        "failed",
        "lag (tags)",
        "deleted",
        "bytes uploaded",
        "bytes mounted",
        "referrers copied",
    )
    summary = {"targets": len(reports)}
    for k in keys:
        vals = [r.summary[k] for r in reports if isinstance(r.summary.get(k), int)]
        if vals:
            summary[k] = sum(vals)
    return {
        "flow": "replicate",
        "status": status,
        "summary": summary,
        "files": reports[0].paths if reports else {},
        "reports": [r.to_dict() for r in reports],
    }
