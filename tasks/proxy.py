"""Tasks for a proxy registry's gc (pull-through cache eviction): plan from the cache's
storage, evict inside the reclaim window, verify from storage. Thin wrappers over
regkeeper.proxycache."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper import proxycache
from regkeeper.context import RunContext
from regkeeper.prune import ReclaimResult
from tasks.common import RETRY, logger


@task(name="plan-cache-eviction", **RETRY)
def plan_cache_eviction(
    ctx: RunContext, registry: str, in_use=None, notes: list[str] | None = None
) -> tuple[proxycache.CacheInventory, proxycache.EvictionPlan]:
    inv, plan = proxycache.plan_cache(ctx, registry, in_use=in_use, notes=notes)
    logger().info(
        "%s: %d repositories, %d images, %d bytes on storage; %d to evict (%d bytes)",
        registry,
        len(inv.repositories),
        len(inv.images),
        plan.used_bytes,
        len(plan.evicted()),
        plan.bytes_to_free,
    )
    return inv, plan


# the window is not retried: reclaim records it, and the next run of any job recovers it
@task(name="evict-cache", retries=0, cache_policy=NO_CACHE)
def evict_cache(
    ctx: RunContext, registry: str, plan: proxycache.EvictionPlan, force: bool = False
) -> tuple[proxycache.UnlinkResult, ReclaimResult]:
    unlinked, window = proxycache.evict(ctx, registry, plan, force=force)
    logger().info(
        "%s: %d images unlinked, %d skipped; reclaim (%s) ran=%s freed=%s bytes%s",
        registry,
        len(unlinked.evicted),
        len(unlinked.skipped),
        window.mode,
        window.ran,
        window.bytes_freed,
        f" error: {window.error}" if window.error else "",
    )
    return unlinked, window


@task(name="verify-cache", **RETRY)
def verify_cache(ctx: RunContext, registry: str, inv, plan) -> proxycache.CacheVerify:
    res = proxycache.verify_cache(ctx, registry, inv, plan)
    logger().info("%s: verified %d kept images: %d problems", registry, res.checked, len(res.problems))
    return res
