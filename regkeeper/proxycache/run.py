"""A proxy registry's gc is eviction: inventory (storage) -> Kubernetes in-use -> plan ->
(dry run stops) -> unlink + garbage-collect inside the reclaim window -> verify (storage).

A pull-through registry answers DELETE with 405, so eviction works on its storage: the evicted
images' revision and tag links are removed inside the one read-only window of
``prune.reclaim`` (its ``in_window`` step) and that window's garbage-collect frees the blobs no
kept image needs. The registry re-fetches an evicted image from the upstream on its next pull.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..context import RunContext
from ..errors import RefusedError, RegkeeperError
from ..policy.pulled import PullKeep
from ..prune.reclaim import ReclaimResult, reclaim, storage_bytes
from ..pulls.history import PullHistory
from ..pulls.lookup import read_history
from ..util import utcnow
from .evict import EvictionPlan, check_evict_cap, plan_eviction
from .inventory import CacheInventory, read_cache

log = logging.getLogger(__name__)


@dataclass
class UnlinkResult:
    evicted: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (repository, digest, why)


@dataclass
class CacheVerify:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    recached: list[str] = field(default_factory=list)  # evicted, pulled again since (information)

    @property
    def ok(self) -> bool:
        return not self.problems


def plan_cache(
    ctx: RunContext, registry: str, in_use=None, notes: list[str] | None = None, now: datetime | None = None
) -> tuple[CacheInventory, EvictionPlan]:
    """The cache's inventory and what its eviction rules evict now."""
    rc = ctx.config.registry(registry)
    pc = rc.proxy_cache
    if rc.type != "proxy" or pc is None or not (pc.storage or rc.storage):
        raise RegkeeperError(
            f"registry {registry}: cache eviction needs type proxy and proxyCache.storage "
            "(the cache's rootdirectory) or a storage section"
        )
    storage = ctx.storage(registry)
    inv = read_cache(storage)
    used = storage_bytes(storage) or 0
    now = now or utcnow()
    hist, why = _history(ctx, registry) if pc.evicts else (None, None)
    plan = plan_eviction(
        registry,
        inv,
        used,
        max_bytes=pc.max_bytes,
        pulled_within=pc.pulled_within,
        pulls=PullKeep(hist, now),
        in_use=in_use,
    )
    plan.cap = check_evict_cap(plan, pc.max_evict_fraction)
    if why:
        plan.notes.insert(0, why)
    if hist is not None:
        plan.notes.insert(0, f"pull history of {registry}: {hist.status()}")
    if notes:
        plan.notes[:0] = notes
    return inv, plan


def _history(ctx: RunContext, registry: str) -> tuple[PullHistory | None, str | None]:
    try:
        return read_history(ctx.config, registry), None
    except (RegkeeperError, OSError) as e:  # the store names its database errors
        return None, (
            f"pull history of {registry} unavailable ({e}): pulledWithin evicts nothing, "
            "maxBytes orders by the time each image was cached"
        )


def evict(
    ctx: RunContext, registry: str, plan: EvictionPlan, force: bool = False
) -> tuple[UnlinkResult, ReclaimResult]:
    """Unlink the evicted images and garbage-collect, inside the reclaim window; refused (nothing
    unlinked) when the plan is over the blast-radius cap and ``force`` is not given."""
    rc = ctx.config.registry(registry)
    assert rc.proxy_cache is not None  # plan_cache checked it
    refusal = check_evict_cap(plan, rc.proxy_cache.max_evict_fraction, force)
    if refusal:
        raise RefusedError(refusal)
    if rc.reclaim.mode == "none":
        raise RefusedError(
            f"registry {registry}: eviction needs the reclaim window (mirrorRepositories[].reclaim.mode "
            "command or kubernetes-job, with readOnly / garbageCollect / readWrite): a proxy registry "
            "answers DELETE with 405 and only garbage-collect frees its blobs"
        )
    res = UnlinkResult()

    def step(storage) -> str:
        try:
            unlink(storage, plan, res)
        except OSError as e:  # a permission or I/O error in the cache's directory
            raise RegkeeperError(f"registry {registry}: eviction: {e.filename}: {e.strerror}") from None
        return f"eviction: {len(res.evicted)} image(s) unlinked, {len(res.skipped)} skipped\n"

    # client None: a proxy's readOnly may stop the cache entirely (its read-only mode does not
    # stop it writing what it fetches), so there is nothing to wait for in the window
    done = reclaim(
        rc.reclaim, ctx.storage(registry), registry=registry, state=ctx.run_state(), in_window=step
    )
    return res, done


def unlink(storage, plan: EvictionPlan, res: UnlinkResult) -> None:
    """Remove each evicted image's revision links and the tags naming it. Re-read first: an
    image cached again since the plan (a newer revision link) is skipped, and a tag now naming
    another manifest is left alone; a child manifest a kept index also lists stays linked."""
    kept = {(d.image.repository, m) for d in plan.kept() for m in d.image.manifests}
    for d in plan.evicted():
        img = d.image
        times = storage.revision_times(img.repository)
        if img.digest not in times:
            res.skipped.append((img.repository, img.digest, "already gone from the cache"))
            continue
        if times[img.digest] > img.cached:
            res.skipped.append((img.repository, img.digest, "cached again since the plan"))
            continue
        mine = {m for m in img.manifests if (img.repository, m) not in kept}
        tags = [t for t, dg in storage.tag_digests(img.repository).items() if dg in mine]
        storage.unlink_manifest(img.repository, img.digest, tags)
        for c in img.children:
            if c in mine:
                storage.unlink_manifest(img.repository, c, [])
        res.evicted.append((img.repository, img.digest))


def verify_cache(ctx: RunContext, registry: str, before: CacheInventory, plan: EvictionPlan) -> CacheVerify:
    """After the window: every kept image still has its manifests linked and every blob it had
    (a data file), read from storage, not through the API (a pull would re-fill the cache)."""
    out = CacheVerify()
    after = read_cache(ctx.storage(registry))
    now = {(i.repository, i.digest): i for i in after.images}
    linked = {(i.repository, m) for i in after.images for m in i.manifests}
    for d in plan.decisions:
        img = d.image
        if d.action == "evict":
            if (img.repository, img.digest) in now:
                out.recached.append(f"{img.ref()}: pulled again after eviction (cached again)")
            continue
        out.checked += 1
        missing_links = [m for m in img.manifests if (img.repository, m) not in linked]
        missing = [b for b in img.blobs if b in before.blob_sizes and b not in after.blob_sizes]
        if missing_links:
            out.problems.append(f"{img.ref()}: kept, but manifest links are gone: {', '.join(missing_links)}")
        if missing:
            out.problems.append(
                f"{img.ref()}: kept, but {len(missing)} blob(s) are gone: {', '.join(missing[:3])}"
            )
    return out
