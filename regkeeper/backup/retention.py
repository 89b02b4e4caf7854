"""Retention: keep the last N snapshots of a registry, sweep objects no snapshot uses.

Indexes are deleted before objects (a prune cut short leaves orphans, never a snapshot naming a
deleted object). While another backup is in flight (a fresh in-flight marker) objects are left
for a later prune; markers older than ``INFLIGHT_STALE`` belong to dead runs and are removed.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..util import utcnow
from .snapshot import Snapshot, list_existing, scan_snapshots
from .store import BackupError, ObjectMissing, ObjectStore

INFLIGHT_STALE = timedelta(hours=6)  # an in-flight marker older than this is ignored


@dataclass
class PruneResult:
    kept: list[str] = field(default_factory=list)  # snapshot keys kept
    deleted_snapshots: list[str] = field(default_factory=list)  # snapshot keys deleted
    deleted_objects: int = 0
    deleted_bytes: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (key, reason): ignored
    sweep_skipped: str | None = None
    dry_run: bool = False

    def summary(self) -> dict:
        return {
            "snapshots kept": len(self.kept),
            "snapshots pruned": len(self.deleted_snapshots),
            "objects pruned": self.deleted_objects,
            "bytes pruned": self.deleted_bytes,
        }


def _live_markers(store: ObjectStore, now: datetime, stale_after: timedelta) -> tuple[list[str], list[str]]:
    """(live, stale) in-flight markers. An unreadable marker counts as live (fail safe; the
    prune result names it so it can be removed by hand)."""
    live: list[str] = []
    stale: list[str] = []
    for key in store.list("inflight/"):
        try:
            t = datetime.fromisoformat(json.loads(store.get(key)).get("started"))
        except ObjectMissing:
            continue
        except (ValueError, TypeError, AttributeError):
            live.append(key)
            continue
        (live if now - t < stale_after else stale).append(key)
    return live, stale


def prune(
    store: ObjectStore,
    keep: int,
    *,
    registry: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    stale_after: timedelta = INFLIGHT_STALE,
) -> PruneResult:
    """Keep the last ``keep`` snapshots of ``registry`` (of every registry when None), then
    delete the objects no remaining snapshot of any registry uses. While another backup is in
    flight (a fresh marker), snapshots are pruned but objects are left for a later run."""
    if keep is None or keep < 1:
        raise BackupError(f"backup.keep must be at least 1, got {keep!r}")
    now = now or utcnow()
    res = PruneResult(dry_run=dry_run)
    entries = scan_snapshots(store)
    by_reg: dict[str, list[Snapshot]] = {}  # the valid snapshots, by registry
    for e in entries:
        if e.snapshot is not None:
            by_reg.setdefault(e.registry, []).append(e.snapshot)
        else:
            res.invalid.append((e.key, e.reason or "invalid"))
    drop: set[str] = set()
    for reg, es in by_reg.items():
        if registry is not None and reg != registry:
            continue
        es.sort(key=lambda s: s.id)
        for s in es[:-keep] if len(es) > keep else []:
            drop.add(s.key)
    used: set[str] = set()
    for es in by_reg.values():
        for s in es:
            if s.key in drop:
                continue
            if registry is None or s.registry == registry:
                res.kept.append(s.key)
            used.update(s.objects)
    res.deleted_snapshots = sorted(drop)

    objects = list_existing(store)
    orphans = sorted(k for k in objects if k not in used)
    # another backup in flight? its objects are not in any index yet, and it may count on
    # objects that look orphaned. Checked after the object LIST, right before deleting.
    live, stale = _live_markers(store, now, stale_after)
    if live:
        res.sweep_skipped = (
            f"backup in flight ({', '.join(sorted(live))}): objects are left for the next prune"
        )
        orphans = []
    elif orphans:
        # a backup may have committed between the first index read and the marker check (its
        # marker is gone, its index is there): read the indexes again, last, before deleting
        for e in scan_snapshots(store):
            if e.snapshot is not None and e.key not in drop:  # a valid one
                used.update(e.snapshot.objects)
        orphans = [k for k in orphans if k not in used]
    res.deleted_objects = len(orphans)
    res.deleted_bytes = sum(objects[k] for k in orphans)
    if dry_run:
        return res
    # indexes first: a prune cut short leaves orphans (swept next time), never a snapshot
    # naming a deleted object
    if drop:
        store.delete(sorted(drop))
    if orphans:
        store.delete(orphans)
    if stale:
        store.delete(stale)  # markers of runs that died long ago
    return res
