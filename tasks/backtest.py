"""The backtest's one task: one registry's backtest (one scan, one pull-store read, the replay)."""

from typing import Optional

from prefect import task

from regkeeper.backtest import Backtest
from regkeeper.backtest.run import backtest
from regkeeper.config import parse_duration
from regkeeper.context import RunContext
from tasks.common import RETRY


@task(name="backtest-registry", task_run_name="backtest {job} on {registry}", **RETRY)
def backtest_registry(ctx: RunContext, job: str, registry: Optional[str], since: str) -> Backtest:
    return backtest(ctx, job, registry, parse_duration(since))
