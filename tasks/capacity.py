"""Tasks for the capacity flow: measure storage, pull latency, evaluate thresholds, alert."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper import capacity as cap
from regkeeper.context import RunContext
from tasks.common import RETRY, logger


@task(name="measure-storage", **RETRY)
def measure_storage(ctx: RunContext, registry: str):
    usage = cap.measure_storage(ctx.config.registry(registry))
    if usage is not None:
        logger().info("%s: %d bytes in %d files (%s)", registry, usage.bytes_used, usage.files, usage.source)
    return usage


@task(name="measure-pull-latency", **RETRY)
def pull_latency(ctx: RunContext, registry: str, samples: list[tuple[str, str]]) -> list[float]:
    client = ctx.client(registry)
    return [cap.measure_pull_latency(client, repo, tag) for repo, tag in samples]


@task(name="evaluate-and-alert", retries=0, cache_policy=NO_CACHE)
def evaluate_and_alert(ctx: RunContext, registry: str, usage, dry_run: bool):
    cc = ctx.config.capacity
    d = ctx.reports_dir() / "capacity"
    store = cap.StateStore(d)
    history = cap.UsageHistory(d / "history.csv") if not dry_run else None
    rc = ctx.config.registry(registry)
    check = cap.check_capacity(registry, usage, capacity_bytes=rc.capacity_bytes,
                               thresholds=cap.Thresholds.from_config(cc), store=store,
                               history=history, window=cc.forecast_window)
    deliveries = []
    if check.alert is not None and not dry_run:
        name, resource, payload = cap.event_payload(check.alert)
        try:
            from prefect.events import emit_event
            emit_event(event=name, resource=resource, payload=payload)
        except Exception as e:  # noqa: BLE001 - an event failure must not lose the webhook alert
            logger().warning("capacity event not emitted: %s", e)
        deliveries = cap.notify_and_commit(check, cc.notify, store)
        logger().warning("capacity %s: %s", check.alert.level, check.alert.message)
    elif not dry_run:
        store.save(check.state)
    return check, deliveries


@task(name="count-tags", **RETRY)
def count_tags(ctx: RunContext, registry: str) -> tuple[int, int]:
    """Repositories and tags from _catalog + tags/list only (the cheap image count)."""
    from regkeeper.inventory import count_tags as core_count
    return core_count(ctx.client(registry))
