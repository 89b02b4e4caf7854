"""A backtest run's reads: the inventory (one scan), the Kubernetes in-use view, the job's rules
as a run would resolve them (``prune.pipeline.job_rules``), the pull store (history and per-day
pulls, read once). Then the pure replay. It never deletes: no delete path is reachable here."""

from datetime import datetime, timedelta

from ..config import format_duration
from ..context import RunContext
from ..errors import ConfigError, RegkeeperError
from ..inventory import scan
from ..prune.pipeline import job_rules, read_kubernetes
from ..pulls.lookup import read_history
from ..pulls.store import PullStore
from ..util import scrub, utcnow
from .replay import Backtest, run

JOBS = ("gc", "expire")


def job_registry(ctx: RunContext, job: str, registry: str | None) -> str:
    if job not in JOBS:
        raise ConfigError(f"backtest --job: expected one of {', '.join(JOBS)}, got {job!r}")
    name = ctx.job_registry(job, registry)  # as the job's own run would choose it
    ctx.config.registry(name).refuse_proxy("backtest")
    return name


def backtest(
    ctx: RunContext, job: str, registry: str | None, since: timedelta, now: datetime | None = None
) -> Backtest:
    name = job_registry(ctx, job, registry)
    now = now or utcnow()
    if ctx.config.pulls is None:
        raise ConfigError("backtest: needs a `pulls` section (the pull history it replays)")
    if (job == "gc" and ctx.config.gc is None) or (job == "expire" and not ctx.config.tiers):
        raise ConfigError(
            f"backtest --job {job}: no {'gc section' if job == 'gc' else 'tiers'} in the config"
        )
    if since < timedelta(days=1):
        raise ConfigError(f"backtest --since: at least 1d, got {format_duration(since)}")
    try:  # the pull store first: it fails fast, the scan does not
        history = read_history(ctx.config, name)
        store = PullStore(ctx.config.pulls_store_url())
        try:
            days = store.pull_days(name)
        finally:
            store.close()
    except OSError as e:  # a database error is named by the store itself (PullStore.error)
        raise RegkeeperError(f"backtest: pull store unreadable: {scrub(str(e))}") from None
    inv = scan(ctx.client(name), storage=ctx.storage(name))
    kstate = read_kubernetes(ctx, name)
    resolve, frac, grace = job_rules(ctx.config, job)
    bt = run(
        inv,
        resolve,
        days,
        job=job,
        now=now,
        since=since,
        history=history,
        in_use=kstate.usage,
        max_delete_fraction=frac,
        untagged_grace=grace,
    )
    bt.notes += kstate.notes
    if since > ctx.config.pulls.day_retention:
        keep = format_duration(ctx.config.pulls.day_retention)
        bt.notes.append(
            f"the window is longer than pulls.dayRetention ({keep}): older per-day pulls are pruned"
        )
    if history.since is None or history.since > now - since:
        started = history.since.date().isoformat() if history.since else "never"
        bt.notes.append(f"pull collection for {name} started {started}: shorter than the window")
    return bt
