"""Which cached images a proxy registry's gc evicts, and why (``proxyCache.pulledWithin``,
``proxyCache.maxBytes``), never one in use in Kubernetes.

Order: (1) in use (the one in-use rule, ``kube.RegistryUsage.is_protected``, tags or digests of
the image and its children): kept, whatever else holds; (2) ``pulledWithin``: an image whose
last use is older than the window is evicted, but only when the pull history covers the whole
window (the same fail-safe as gc's ``pulledWithin``: ``policy.pulled.PullKeep``); (3)
``maxBytes``: while the storage would still hold more than the cap, the least recently used
image left is evicted. Last use = the later of the last recorded pull (the pull store) and the
time the cache stored the image (it stores only what something pulled through it). Bytes freed
count only blobs no kept image needs (a shared layer is freed with its last user).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..config.units import format_duration
from ..policy.cap import check_cap
from ..policy.pulled import PullKeep
from ..pulls.history import iso
from ..util import human_bytes
from .inventory import CacheImage, CacheInventory

EVICT, KEEP = "evict", "keep"
RULE_IN_USE, RULE_PULLED, RULE_MAX_BYTES = "in use", "pulledWithin", "maxBytes LRU"


@dataclass
class Decision:
    image: CacheImage
    action: str
    rule: str  # in use | pulledWithin | maxBytes LRU | (empty: no rule evicts it)
    reason: str
    last_used: datetime
    last_used_source: str  # "pull" | "cached"
    bytes_freed: int = 0


@dataclass
class EvictionPlan:
    registry: str
    used_bytes: int  # measured file bytes of the storage before
    max_bytes: int | None
    pulled_within: timedelta | None
    decisions: list[Decision] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cap: str | None = None  # why a run without force would be refused (check_evict_cap), or None

    def evicted(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == EVICT]

    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == KEEP]

    @property
    def bytes_to_free(self) -> int:
        return sum(d.bytes_freed for d in self.evicted())

    @property
    def bytes_after(self) -> int:
        return self.used_bytes - self.bytes_to_free


def plan_eviction(
    registry: str,
    inv: CacheInventory,
    used_bytes: int,
    *,
    max_bytes: int | None,
    pulled_within: timedelta | None,
    pulls: PullKeep,
    in_use=None,
) -> EvictionPlan:
    """The eviction plan. ``in_use``: a ``kube.RegistryUsage`` (None: no Kubernetes section,
    nothing is protected by use, and the caller's notes say so); ``pulls``: the pull history of
    the registry with the run's ``now``."""
    plan = EvictionPlan(registry, used_bytes, max_bytes, pulled_within)
    users = inv.users()
    order: list[Decision] = []
    for img in inv.images:
        last, src = _last_used(img, pulls)
        d = Decision(img, KEEP, "", "", last, src)
        plan.decisions.append(d)
        sources = _in_use(img, in_use)
        if sources:
            d.rule, d.reason = (
                RULE_IN_USE,
                f"in use: {sources[0]}" + (f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""),
            )
            continue
        if pulled_within is not None:
            kept = _pull_keep(d, pulled_within, pulls)
            if kept is None:
                _evict(d, RULE_PULLED, _stale_reason(d, pulled_within), inv, users)
                continue
            d.reason = kept
        order.append(d)
    if pulled_within is not None:
        why = pulls.shortfall(pulled_within)
        if why:
            plan.notes.append(
                f"pulledWithin {format_duration(pulled_within)} on {registry}: {why}: "
                "nothing is evicted for that reason"
            )
    if max_bytes is not None:
        _lru(plan, order, inv, users, max_bytes)
    for d in plan.decisions:
        if d.action == KEEP and not d.reason:
            d.reason = _kept_reason(d, plan)
        elif d.action == KEEP and d.rule != RULE_IN_USE and max_bytes is not None:
            d.reason += f"; under maxBytes {human_bytes(max_bytes)}"
    return plan


def check_evict_cap(plan: EvictionPlan, max_fraction: float, force: bool = False) -> str | None:
    """The one blast-radius cap over one eviction: more than ``max_fraction``
    (``proxyCache.maxEvictFraction``) of the cached images is refused unless ``force``."""
    return check_cap(
        len(plan.evicted()),
        len(plan.decisions),
        max_fraction,
        force,
        plan.registry,
        action="the eviction evicts",
        key="proxyCache.maxEvictFraction",
        unit="cached images",
    )


def _last_used(img: CacheImage, pulls: PullKeep) -> tuple[datetime, str]:
    """The later of the image's last recorded pull (any of its manifests) and the time the
    cache stored it: a cache stores only what something pulled through it (an excluded user
    agent, a pull before collection started, a re-fetch after an eviction)."""
    hist = pulls.pulls
    pulled = [t for m in img.manifests if hist is not None and (t := hist.last_pull(img.repository, m))]
    if pulled and max(pulled) >= img.cached:
        return max(pulled), "pull"
    return img.cached, "cached"


def _in_use(img: CacheImage, in_use) -> list:
    if in_use is None:
        return []
    out = list(in_use.is_protected(img.repository, img.tags, img.digest))
    for c in img.children:
        out.extend(in_use.is_protected(img.repository, None, c))
    return out


def _pull_keep(d: Decision, window: timedelta, pulls: PullKeep) -> str | None:
    """Why ``pulledWithin`` keeps the image (a manifest of it pulled within the window, cached
    within it, or the history does not cover the window), else None: evict."""
    for m in d.image.manifests:
        why = pulls.pulled(window, d.image.repository, m)
        if why:
            return why
    if pulls.now - d.image.cached <= window:
        return f"cached {iso(d.image.cached)} (within {format_duration(window)})"
    return pulls.shortfall(window)


def _stale_reason(d: Decision, window: timedelta) -> str:
    if d.last_used_source == "pull":
        return f"last pulled {iso(d.last_used)}, not within {format_duration(window)}"
    return f"not pulled within {format_duration(window)} (cached {iso(d.image.cached)})"


def _evict(d: Decision, rule: str, reason: str, inv: CacheInventory, users: dict[str, int]) -> None:
    d.action, d.rule, d.reason = EVICT, rule, reason
    freed = 0
    for b in d.image.blobs:
        users[b] -= 1
        if users[b] == 0:
            freed += inv.blob_sizes.get(b, 0)
    d.bytes_freed = freed


def _lru(plan: EvictionPlan, order: list[Decision], inv, users, max_bytes: int) -> None:
    order.sort(key=lambda d: (d.last_used, d.image.repository, d.image.digest))
    for d in order:
        if plan.bytes_after <= max_bytes:
            return
        basis = "last pulled" if d.last_used_source == "pull" else "cached"
        _evict(
            d,
            RULE_MAX_BYTES,
            f"least recently used ({basis} {iso(d.last_used)}): storage "
            f"{human_bytes(plan.bytes_after)} over maxBytes {human_bytes(max_bytes)}",
            inv,
            users,
        )
    if plan.bytes_after > max_bytes:
        held = sum(1 for d in plan.decisions if d.rule == RULE_IN_USE)
        plan.notes.append(
            f"maxBytes {human_bytes(max_bytes)}: the cache still holds {human_bytes(plan.bytes_after)} "
            f"after evicting every candidate ({held} image(s) kept because they are in use)"
        )


def _kept_reason(d: Decision, plan: EvictionPlan) -> str:
    if plan.max_bytes is not None:
        return f"under maxBytes {human_bytes(plan.max_bytes)}"
    return "no eviction rule configured (proxyCache.maxBytes, proxyCache.pulledWithin)"
