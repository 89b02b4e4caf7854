"""Tasks for the capacity flow: measure storage, pull latency, evaluate thresholds, alert,
check that the registry takes writes (read-only detection)."""

from datetime import timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper import capacity as cap
from regkeeper.config import CapacityConfig
from regkeeper.context import RunContext
from tasks.common import RETRY, logger


@task(name="measure-storage", **RETRY)
def measure_storage(ctx: RunContext, registry: str) -> cap.StorageUsage | None:
    usage = cap.measure_storage(ctx.config.registry(registry))
    if usage is not None:
        logger().info("%s: %d bytes in %d files (%s)", registry, usage.bytes_used, usage.files, usage.source)
    return usage


@task(name="measure-pull-latency", **RETRY)
def pull_latency(ctx: RunContext, registry: str, samples: list[tuple[str, str]]) -> list[float]:
    client = ctx.client(registry)
    return [cap.measure_pull_latency(client, repo, tag) for repo, tag in samples]


@task(name="evaluate-and-alert", retries=0, cache_policy=NO_CACHE)
def evaluate_and_alert(
    ctx: RunContext, registry: str, usage: cap.StorageUsage | None, dry_run: bool
) -> tuple[cap.CapacityCheck, list[cap.Delivery]]:
    cc = ctx.config.capacity or CapacityConfig()  # the flow fills in the defaults
    d = ctx.reports_dir() / "capacity"
    store = cap.StateStore(d)
    history = cap.UsageHistory(cc.history_file(ctx.reports_dir())) if not dry_run else None
    rc = ctx.config.registry(registry)
    check = cap.check_capacity(
        registry,
        usage,
        capacity_bytes=rc.capacity_bytes,
        thresholds=cap.Thresholds.from_config(cc),
        store=store,
        history=history,
        window=cc.forecast_window,
    )
    if history is not None:  # keep historyRetention; the file is rewritten at most once a day
        history.prune(cc.history_retention, slack=timedelta(days=1))
    deliveries: list[cap.Delivery] = []
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


@task(name="quarantine-bytes", **RETRY)
def quarantine_bytes(ctx: RunContext, registry: str) -> tuple[int, int]:
    """(records, bytes) the quarantine holds (counted apart from the images)."""
    from regkeeper.quarantine.listing import held

    qc = ctx.config.quarantine
    if qc is None:
        return 0, 0
    h = held(ctx.client(registry), qc.namespace)
    return h.records, h.bytes


@task(name="check-writes", retries=0, cache_policy=NO_CACHE)
def check_read_only(
    ctx: RunContext, registry: str, dry_run: bool
) -> tuple[cap.ReadOnlyCheck | None, list[cap.Delivery]]:
    """Does the registry take writes? Alert when it refuses them and no live regkeeper read-only
    window explains it. Returns ``(ReadOnlyCheck or None when not checked, deliveries)``."""
    cc = ctx.config.capacity or CapacityConfig()  # the flow fills in the defaults
    rc = ctx.config.registry(registry)
    if not cc.write_check or rc.type == "proxy" or not rc.url:
        return None, []
    d = ctx.reports_dir() / "capacity"
    store = cap.ReadOnlyStore(d)
    ro = cap.read_only_check(
        ctx.client(registry),
        cc.write_check_repository,
        registry=registry,
        state_root=ctx.config.state_path(),
        store=store,
    )
    deliveries: list[cap.Delivery] = []
    if ro.alert is not None and not dry_run:
        from regkeeper.capacity.readonly import event_payload

        try:
            from prefect.events import emit_event

            name, resource, payload = event_payload(ro.alert)
            emit_event(event=name, resource=resource, payload=payload)
        except Exception as e:  # noqa: BLE001 - an event failure must not lose the webhook alert
            logger().warning("read-only event not emitted: %s", e)
        deliveries = cap.notify_readonly(ro.alert, cc.notify)
        if all(x.ok for x in deliveries):
            store.save(ro.state)
        logger().warning("%s", ro.alert.message)
    elif ro.owned_by:
        logger().info("%s: %s", registry, ro.owned_by)
    return ro, deliveries
