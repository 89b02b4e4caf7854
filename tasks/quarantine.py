"""Tasks for the quarantine: undo one run (one task: the whole selection, never per tag).
A thin wrapper over regkeeper.quarantine."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper.context import RunContext
from regkeeper.errors import ConfigError
from regkeeper.quarantine.undo import UndoResult
from regkeeper.quarantine.undo import undo as core_undo
from tasks.common import logger


# writes tags: never retried as a whole (every HTTP call is retried by the transport)
@task(name="undo-run", task_run_name="undo {run} on {registry}", retries=0, cache_policy=NO_CACHE)
def undo_run(
    ctx: RunContext,
    registry: str,
    run: str,
    repositories: str | None,
    tags: str | None,
    apply: bool,
) -> UndoResult:
    qc = ctx.config.quarantine
    if qc is None:
        raise ConfigError(
            f"{ctx.config.source or 'config'}: quarantine: no such section: nothing is held to undo"
        )
    res = core_undo(ctx.client(registry), qc, run, repositories=repositories, tags=tags, apply=apply)
    logger().info(
        "undo %s on %s: %d tags %s, %d untagged, %d moved (not overwritten), %d failed",
        run,
        registry,
        len(res.restored),
        "to restore" if res.dry_run else "restored",
        len(res.untagged),
        len(res.moved),
        len(res.failed),
    )
    return res
