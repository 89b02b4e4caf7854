"""gc: delete image versions that no rule keeps and no Kubernetes workload uses, then reclaim
blob storage. Nightly at 03:00 by default."""

from prefect import flow

from flows._proxy import run_eviction
from flows._prune import run_pipeline
from flows.params import CapForce, ConfigPath, DeleteDryRun, GcDays, GcKeepLast, GcRegistry
from flows.runner import RegkeeperTaskRunner
from regkeeper import prune
from regkeeper.context import RunContext
from tasks.recovery import begin_run


@flow(
    name="gc",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def gc(
    registry: GcRegistry = None,
    days: GcDays = None,
    keep_last: GcKeepLast = None,
    dry_run: DeleteDryRun = False,
    force: CapForce = False,
    config_path: ConfigPath = None,
) -> dict:
    """Kubernetes-aware garbage collection with an exact reclaim preview. On a proxy
    (pull-through) registry gc is cache eviction (``proxyCache.pulledWithin``, ``maxBytes``):
    a proxy answers DELETE with 405, so images are unlinked in its storage inside the reclaim
    window (flows/_proxy.py); days and keep_last do not apply there, force overrides
    ``proxyCache.maxEvictFraction``.

    Args:
        registry: registry name from mirrorRepositories (default: gc.registry, else the first).
        days: delete versions older than this many days (default: gc.days).
        keep_last: always keep the newest N versions per repository (default: gc.keepLast).
        dry_run: plan and report only; delete nothing.
        force: override the blast-radius cap.
        config_path: the config file.
    """
    ctx = RunContext.load(config_path)
    name = ctx.job_registry("gc", registry)
    try:
        notes = begin_run(ctx, "gc")
        if ctx.config.registry(name).type == "proxy":
            return run_eviction(ctx, name, dry_run=dry_run, force=force, notes=notes)
        return run_pipeline(
            "gc",
            ctx,
            name,
            dry_run=dry_run,
            force=force,
            notes=notes,
            make_plan=lambda inv, ks: prune.gc_plan(ctx, name, inv, ks, days=days, keep_last=keep_last),
        )
    finally:
        ctx.close()
