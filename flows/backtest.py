"""backtest: what the configured gc or expire rules would delete that was pulled (or run in
Kubernetes) afterwards, the rule's "regret" before it goes live (``regkeeper/backtest``). Reads
only: the inventory, Kubernetes, the pull store; never deletes. A by-hand deployment
(``backtest/backtest-manual``); ``regkeeper backtest`` runs the same without Prefect."""

from typing import Annotated, Literal, Optional

from prefect import flow
from pydantic import Field

from flows.params import ConfigPath
from regkeeper.backtest import build_report
from regkeeper.backtest.run import job_registry
from regkeeper.config import parse_duration
from regkeeper.context import RunContext
from tasks.backtest import backtest_registry
from tasks.common import logger, publish_report
from tasks.recovery import add_notes, begin_run


@flow(name="backtest", log_prints=False, validate_parameters=True)
def backtest(
    job: Annotated[Literal["gc", "expire"], Field(description="Whose rules to backtest")] = "gc",
    since: Annotated[str, Field(description="The window replayed, a duration (90d)")] = "90d",
    registry: Annotated[
        Optional[str], Field(description="Registry name (default: the job's configured registry)")
    ] = None,
    dry_run: Annotated[bool, Field(description="Always a dry run: a backtest never deletes")] = True,
    config_path: ConfigPath = None,
) -> dict:
    """Replay the job's rules over the pull history and report the images they would regret.

    Args:
        job: gc or expire.
        since: the window (e.g. 90d).
        registry: the registry (default: the job's).
        dry_run: ignored: a backtest only reads.
        config_path: the config file.
    """
    parse_duration(since)  # a bad window fails before any read
    ctx = RunContext.load(config_path)
    notes = begin_run(ctx, "backtest")  # every run of every job recovers first
    registry = job_registry(ctx, job, registry)  # named in the task run ("backtest gc on <registry>")
    rep = build_report(backtest_registry(ctx, job, registry, since)).finish("dry-run")
    add_notes(rep, notes)
    for line in rep.headline:  # the flow run's logs say the result, not only "report written"
        logger().info("backtest: %s", line)
    paths = publish_report(rep, str(ctx.reports_dir()))
    return {"status": rep.status, "summary": rep.summary, "files": paths, "notes": rep.notes}
