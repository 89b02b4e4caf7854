"""The shared gc/expire pipeline as a Prefect composition (used by flows/gc.py and
flows/expire.py). plan -> (dry run: report and stop) -> execute -> reclaim -> verify -> report.

Large task arguments (the inventory, the plan, the report, the delete items) are passed
``_whole``: Prefect then hands them to the task as they are instead of walking every element
twice per task call looking for futures (seconds of CPU per run at 10k tags)."""

from typing import TypeVar, cast

from prefect.utilities.annotations import quote

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.errors import RefusedError, RegkeeperError
from regkeeper.models import Inventory
from regkeeper.prune import DeleteResult
from regkeeper.quarantine.report import QuarantineRun
from regkeeper.util import batch_label, batches, utcnow
from tasks.common import gather, logger, publish_report, report_job_metrics, with_reports
from tasks.prune import (
    delete_batch,
    list_repositories,
    plan_release,
    read_kubernetes,
    reclaim_storage,
    release_quarantine,
    scan_batch,
    verify_kept,
)
from tasks.recovery import add_notes

SCAN_BATCH = 25  # repositories per scan task
DELETE_BATCH = 25  # repositories per delete task

T = TypeVar("T")


def _whole(value: T) -> T:
    """``value`` for a task argument that Prefect must not walk (it holds no future): the task
    receives ``value`` itself."""
    return cast(T, quote(value))


def scan_registry(ctx: RunContext, registry: str, include=None, exclude=None) -> Inventory:
    repos = list_repositories(ctx, registry, include, exclude)
    futures = [scan_batch.submit(ctx, registry, b, label=batch_label(b)) for b in batches(repos, SCAN_BATCH)]
    storage = ctx.storage(registry)
    inv = Inventory(
        registry=registry,
        scanned_at=utcnow(),
        push_time_source=storage.kind if storage else "none",
    )
    for f in futures:
        inv.merge(f.result())
    return inv


def delete_planned(ctx: RunContext, registry: str, plan, inv: Inventory) -> DeleteResult:
    """The plan's deletes, one task per batch of repositories; a failed batch does not stop
    the others (its deletes are recorded as failed)."""
    by_repo: dict[str, list] = {}
    for repo, dg in plan.manifests_to_delete():
        by_repo.setdefault(repo, []).append((repo, dg))
    for repo in prune.needs_repair(inv):  # a fallback index listing a referrer that is gone
        by_repo.setdefault(repo, [])
    repo_batches = batches(sorted(by_repo), DELETE_BATCH)
    recheck = prune.planned_tag_deletes(plan)
    futures = [
        delete_batch.submit(
            ctx,
            registry,
            _whole([it for r in b for it in by_repo[r]]),
            _whole(inv),
            label=batch_label(b),
            recheck=_whole({r: recheck.get(r, set()) for r in b}),
            plan=_whole(plan),
        )
        for b in repo_batches
    ]
    deleted = DeleteResult()
    for b, res, err in gather(repo_batches, futures):
        if err is None:
            deleted.merge(res)
        else:
            deleted.failed += [(r, dg, f"delete task failed: {err}") for r in b for _, dg in by_repo[r]]
    return deleted


def run_pipeline(
    flow: str,
    ctx: RunContext,
    registry: str,
    *,
    dry_run: bool,
    force: bool,
    make_plan,
    notes: list[str] | None = None,
) -> dict:
    """``notes``: what the run's recovery hook did (``tasks.recovery.begin_run``), said first in
    the report."""
    log = logger()
    started = utcnow()
    plan = inv = kstate = deleted = reclaimed = verified = None
    refused = error = None
    quarantine = _quarantine_run(ctx, registry)
    try:
        inv = scan_registry(ctx, registry)
        kstate = read_kubernetes(ctx, registry)
        plan = make_plan(inv, kstate)
        log.info("plan: %s", {k: v for k, v in plan.summary().items() if k != "per_repository"})
        if quarantine is not None:  # what the window has passed: deleted for good this run
            quarantine.plan = plan_release(ctx, registry, _whole(inv), kstate)
        if not dry_run:
            refused = prune.check_cap(plan, force)
        if not dry_run and not refused:
            released = _release(ctx, registry, quarantine)
            deleted = delete_planned(ctx, registry, plan, inv)
            if deleted.stopped:
                raise RegkeeperError(deleted.stopped)
            if quarantine is not None:
                quarantine.held = deleted
            freed_any = bool(deleted.deleted or released)
            reclaimed = reclaim_storage(ctx, registry, _whole(plan), freed_any)
            verified = verify_kept(
                ctx,
                registry,
                _whole(inv),
                _whole(plan),
                everything=bool(reclaimed.ran),
                deleted=_whole(deleted),
            )
    except RefusedError as e:
        refused = str(e)
    except RegkeeperError as e:
        error = str(e)
    report = prune.build_report(
        flow,
        registry,
        plan,
        inv=inv,
        kstate=kstate,
        deleted=deleted,
        reclaimed=reclaimed,
        verified=verified,
        dry_run=dry_run,
        refused=refused,
        error=error,
        started=started,
        quarantine=quarantine,
    )
    add_notes(report, list(notes or []) + (reclaimed.notes if reclaimed is not None else []))
    publish_report(_whole(report), str(ctx.reports_dir()))
    _metrics(ctx, flow, registry, report, reclaimed)
    if report.status in ("failed", "refused"):
        reason = refused or error or "; ".join(report.notes[-3:])
        if refused:
            raise with_reports(RefusedError(f"{flow} on {registry} refused: {reason}"), [report])
        raise with_reports(RegkeeperError(f"{flow} on {registry} failed: {reason}"), [report])
    return report.to_dict()


def _quarantine_run(ctx: RunContext, registry: str) -> QuarantineRun | None:
    if ctx.config.quarantine is None:
        return None
    q = ctx.quarantine(registry)
    return QuarantineRun(run=q.run if q is not None else "")


def _release(ctx: RunContext, registry: str, quarantine: QuarantineRun | None) -> bool:
    """Release the entries past the window (before this run's own deletes); True when any
    manifest was deleted for good (the reclaim then has bytes to free)."""
    if quarantine is None or quarantine.plan is None or not quarantine.plan.due:
        return False
    done = cast(tuple, release_quarantine(ctx, registry, _whole(quarantine.plan)))
    quarantine.back, quarantine.released = done
    if quarantine.released.stopped:
        raise RegkeeperError(quarantine.released.stopped)
    return bool(quarantine.released.deleted)


def _metrics(ctx: RunContext, flow: str, registry: str, report, reclaimed) -> None:
    report_job_metrics(
        ctx,
        flow,
        registry,
        report.status in ("ok", "dry-run"),
        {
            "bytes_reclaimed": max(0, (reclaimed.bytes_freed or 0)) if reclaimed else 0,
            "items_deleted": report.summary.get("deletes ok", 0),
            "items_failed": report.summary.get("deletes failed", 0),
        },
    )
