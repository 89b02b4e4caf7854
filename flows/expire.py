"""expire: tier policies. temp repositories expire 72h after push (whole repositories removed),
business keeps N/days, base never expires. Hourly by default."""

from prefect import flow

from flows._prune import run_pipeline
from flows.params import CapForce, ConfigPath, DeleteDryRun, ExpireRegistry
from flows.runner import RegkeeperTaskRunner
from regkeeper import prune
from regkeeper.context import RunContext
from tasks.recovery import begin_run


@flow(
    name="expire",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def expire(
    registry: ExpireRegistry = None,
    dry_run: DeleteDryRun = False,
    force: CapForce = False,
    config_path: ConfigPath = None,
) -> dict:
    """Apply the tier policies from the config's `tiers` section.

    Args:
        registry: registry name (default: expire.registry, else gc.registry, else the first).
        dry_run: plan and report only; delete nothing.
        force: override the blast-radius cap.
        config_path: the config file.
    """
    ctx = RunContext.load(config_path)
    name = ctx.job_registry("expire", registry)
    try:
        ctx.config.registry(name).refuse_proxy("expire")  # 405 on every DELETE: say why instead
        notes = begin_run(ctx, "expire")
        return run_pipeline(
            "expire",
            ctx,
            name,
            dry_run=dry_run,
            force=force,
            notes=notes,
            make_plan=lambda inv, ks: prune.expire_plan(ctx, name, inv, ks),
        )
    finally:
        ctx.close()
