"""The report of a proxy registry's gc (eviction), through the one report writer: what the
cache holds (repositories, images, bytes), its capacity, each image's decision naming the rule
(in use / pulledWithin / maxBytes LRU), and what the window did (bytes freed, measured)."""

from datetime import datetime

from ..config.units import format_duration
from ..prune.reclaim import ReclaimResult
from ..pulls.history import iso
from ..report import Report
from ..util import human_bytes
from .evict import EVICT, RULE_IN_USE, RULE_MAX_BYTES, RULE_PULLED, EvictionPlan
from .inventory import CacheInventory
from .run import CacheVerify, UnlinkResult

DECISION_COLUMNS = [
    "action",
    "repository",
    "tags",
    "rule",
    "reason",
    "last_used",
    "last_used_from",
    "bytes",
    "bytes_freed",
    "digest",
]


def build_report(
    registry: str,
    *,
    inv: CacheInventory | None,
    plan: EvictionPlan | None,
    notes: list[str] | None = None,
    unlinked: UnlinkResult | None = None,
    reclaimed: ReclaimResult | None = None,
    verified: CacheVerify | None = None,
    dry_run: bool = False,
    refused: str | None = None,
    error: str | None = None,
    started: datetime | None = None,
    capacity: int | None = None,
) -> Report:
    rep = Report(flow="gc", registry=registry, title="regkeeper gc (pull-through cache eviction)")
    if started:
        rep.started = started
    for n in notes or []:
        rep.note(n)
    if inv is not None and plan is not None:
        _inventory(rep, inv, plan, capacity)
        _decisions(rep, inv, plan, done=unlinked is not None)
    if unlinked is not None:
        rep.summary["images evicted"] = len(unlinked.evicted)
        for repo, dg, why in unlinked.skipped:
            rep.note(f"not evicted: {repo}@{dg}: {why}")
    if reclaimed is not None:
        _window(rep, reclaimed)
    if verified is not None:
        rep.summary["kept images verified"] = verified.checked
        for p in verified.problems:
            rep.note(f"verify: {p}")
        for r in verified.recached:
            rep.note(f"verify: {r}")
    status = _status(dry_run, refused, error, reclaimed, verified)
    rep.finish(status)
    _headline(rep, plan, unlinked, reclaimed, verified, dry_run, refused, error)
    return rep


def _inventory(rep: Report, inv: CacheInventory, plan: EvictionPlan, capacity: int | None) -> None:
    s = rep.summary
    s["repositories cached"] = len(inv.repositories)
    s["images cached"] = len(inv.images)
    s["tags cached"] = sum(len(i.tags) for i in inv.images)
    s["storage bytes (measured)"] = plan.used_bytes
    s["blob bytes"] = inv.blob_bytes
    if capacity:
        s["capacity"] = capacity
        s["usage"] = f"{plan.used_bytes / capacity:.1%}"
    s["maxBytes"] = plan.max_bytes
    s["pulledWithin"] = None if plan.pulled_within is None else format_duration(plan.pulled_within)
    # counts, not bytes: a figure named "…maxBytes" would be shown as bytes by the writer
    for rule, key in ((RULE_PULLED, "pulledWithin"), (RULE_MAX_BYTES, "the size cap (LRU)")):
        s[f"images to evict by {key}"] = sum(1 for d in plan.evicted() if d.rule == rule)
    s["kept (in use)"] = sum(1 for d in plan.decisions if d.rule == RULE_IN_USE)
    s["bytes to free"] = plan.bytes_to_free
    rep.add_table("repositories", inv.per_repository(), ["repository", "images", "tags", "bytes"])
    for n in plan.notes:
        rep.note(n)


def _decisions(rep: Report, inv: CacheInventory, plan: EvictionPlan, done: bool) -> None:
    rows = []
    for d in sorted(plan.decisions, key=lambda d: (d.action != EVICT, d.image.repository, d.image.digest)):
        img = d.image
        rows.append(
            {
                "action": ("evicted" if done else "evict") if d.action == EVICT else "keep",
                "repository": img.repository,
                "tags": " ".join(img.tags),
                "rule": d.rule,
                "reason": d.reason,
                "last_used": iso(d.last_used),
                "last_used_from": d.last_used_source,
                "bytes": inv.image_bytes(img),
                "bytes_freed": d.bytes_freed,
                "digest": img.digest,
            }
        )
        if img.problem:
            rep.note(f"{img.ref()}: {img.problem}")
    t = rep.add_table(
        "decisions", rows, DECISION_COLUMNS, DECISION_COLUMNS[:5], empty="The cache holds no images."
    )
    rep.tables.remove(t)
    rep.tables.insert(0, t)  # the decisions come first (the CSV is the first table)


def _window(rep: Report, r: ReclaimResult) -> None:
    s = rep.summary
    s["reclaim"] = r.mode + (" (ran)" if r.ran else " (did not run)")
    s["storage bytes before"] = r.bytes_before
    s["storage bytes after"] = r.bytes_after
    s["bytes freed (measured)"] = r.bytes_freed
    for n in r.notes:
        rep.note(n)
    if r.error:
        rep.note(f"reclaim: {r.error}")


def _status(dry_run, refused, error, reclaimed, verified) -> str:
    if refused:
        return "refused"
    if error or (reclaimed is not None and reclaimed.error) or (verified is not None and not verified.ok):
        return "failed"
    return "dry-run" if dry_run else "ok"


def _headline(rep, plan, unlinked, reclaimed, verified, dry_run, refused, error) -> None:
    if refused:
        rep.lead(f"Refused: {refused}")
    if error:
        rep.lead(f"Failed: {error}")
    if plan is None:
        return
    ev = plan.evicted()
    by_rule = ", ".join(
        f"{rule}: {n}"
        for rule in (RULE_PULLED, RULE_MAX_BYTES)
        if (n := sum(1 for d in ev if d.rule == rule))
    )
    in_use = sum(1 for d in plan.decisions if d.rule == RULE_IN_USE)
    rules = f" ({by_rule})" if by_rule else ""
    of = f"of {_n(len(plan.decisions), 'cached image')}"
    if unlinked is None and not ev and not dry_run:
        rep.lead(f"Nothing to evict {of}; {in_use} kept because in use.")
    elif unlinked is None:
        verb = "Would evict" if dry_run else "Planned to evict"
        rep.lead(
            f"{verb} {len(ev)} {of}{rules}, {human_bytes(plan.bytes_to_free)} to free; "
            f"{in_use} kept because in use."
        )
    else:
        planned = f" (planned {len(ev)})" if len(unlinked.evicted) != len(ev) else ""
        rep.lead(f"Evicted {len(unlinked.evicted)} {of}{planned}{rules}; {in_use} kept because in use.")
    if plan.cap and unlinked is None and not refused:
        rep.lead(f"A run would be refused: {plan.cap}")
    _cap_and_history_headline(rep, plan, planned=unlinked is None)
    if reclaimed is not None and reclaimed.bytes_freed is not None:
        rep.lead(
            f"Storage {human_bytes(reclaimed.bytes_before)} -> {human_bytes(reclaimed.bytes_after)} "
            f"(freed {human_bytes(reclaimed.bytes_freed)}, measured)."
        )
    if reclaimed is not None and reclaimed.error:
        rep.lead(f"Reclaim window: {reclaimed.error}")
    if verified is not None and verified.problems:
        rep.lead(f"Verify: {_n(len(verified.problems), 'kept image')} damaged: {verified.problems[0]}")


def _cap_and_history_headline(rep: Report, plan: EvictionPlan, planned: bool) -> None:
    """Where the plan leaves the cache against ``maxBytes`` (``planned``: before a run measures
    it), and the pull-history fail-safe when it holds images back (often why nothing is evicted)."""
    if planned and plan.max_bytes is not None:
        after, cap = human_bytes(plan.bytes_after), human_bytes(plan.max_bytes)
        if plan.bytes_after <= plan.max_bytes:
            rep.lead(f"Storage after eviction: {after}, under maxBytes {cap}.")
        else:
            rep.lead(f"Storage after eviction: {after}, still OVER maxBytes {cap} (only in-use images left).")
    for n in plan.notes:
        if "nothing is evicted for that reason" in n:
            rep.lead(f"Held back by the pulledWithin fail-safe: {n}.")


def _n(n: int, one: str) -> str:
    return f"{n} {one}{'' if n == 1 else 's'}"
