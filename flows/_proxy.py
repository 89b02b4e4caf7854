"""gc of a proxy (pull-through) registry as a Prefect composition (used by flows/gc.py): a
proxy answers DELETE with 405, so its gc is eviction. plan (the cache's storage, Kubernetes
in-use, pull history) -> (dry run: report and stop) -> unlink + garbage-collect inside the
reclaim window -> verify (storage) -> report."""

from regkeeper import proxycache
from regkeeper.context import RunContext
from regkeeper.errors import RefusedError, RegkeeperError
from regkeeper.util import utcnow
from tasks.common import publish_report, report_job_metrics, with_reports
from tasks.proxy import evict_cache, plan_cache_eviction, verify_cache
from tasks.prune import read_kubernetes
from tasks.recovery import add_notes


def run_eviction(
    ctx: RunContext, registry: str, *, dry_run: bool, force: bool = False, notes: list[str] | None = None
) -> dict:
    started = utcnow()
    inv = plan = unlinked = window = verified = None
    refused = error = None
    try:
        kstate = read_kubernetes(ctx, registry)
        inv, plan = plan_cache_eviction(ctx, registry, kstate.usage, kstate.notes)
        if not dry_run and plan.evicted():
            unlinked, window = evict_cache(ctx, registry, plan, force)
            if window.ran:
                verified = verify_cache(ctx, registry, inv, plan)
    except RefusedError as e:
        refused = str(e)
    except RegkeeperError as e:
        error = str(e)
    rc = ctx.config.registry(registry)
    report = proxycache.build_report(
        registry,
        inv=inv,
        plan=plan,
        unlinked=unlinked,
        reclaimed=window,
        verified=verified,
        dry_run=dry_run,
        refused=refused,
        error=error,
        started=started,
        capacity=rc.capacity_bytes,
    )
    add_notes(report, list(notes or []) + (window.notes if window is not None else []))
    publish_report(report, str(ctx.reports_dir()))
    freed = window.bytes_freed if window is not None else 0
    report_job_metrics(
        ctx,
        "gc",
        registry,
        report.status in ("ok", "dry-run"),
        {"bytes_reclaimed": max(0, freed or 0), "items_deleted": len(unlinked.evicted) if unlinked else 0},
    )
    if report.status in ("failed", "refused"):
        reason = refused or error or "; ".join(report.headline[-2:])
        kind = RefusedError if refused else RegkeeperError
        raise with_reports(kind(f"gc on {registry} {report.status}: {reason}"), [report])
    return report.to_dict()
