"""Release: quarantine entries older than the window are deleted for good, through the one
delete path (final: the quarantine's own repositories are never held again), so the reclaim
after them frees the bytes. Planned at the start of every gc / expire run, shown in its plan and
report with the bytes it frees (``policy.freed.released_bytes``). An entry whose image a
Kubernetes workload still uses is released BACK (undone) instead, and reported.

``leave`` is what release and undo share: entries leave their record (the record is re-PUT
without them, or deleted when empty), and every held manifest no remaining record needs is
deleted from the quarantine repository."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..config import QuarantineConfig
from ..models import Inventory
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..policy.freed import released_bytes
from .closure import closure_blobs, read_closure
from .listing import read_records
from .record import Record, quarantine_repo


@dataclass
class ReleasePlan:
    window: timedelta
    now: datetime
    held: list[Record] = field(default_factory=list)  # every record (before the release)
    due: list[Record] = field(default_factory=list)  # older than the window: deleted for good
    back: list[tuple[Record, str, str, str]] = field(default_factory=list)  # (rec, digest, tags, in use by)
    bytes_freed: int = 0  # the preview
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (quarantine repo, digest)
    references: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        due = {id(r) for r in self.due}
        return [
            {
                "run": r.run,
                "repository": r.repository,
                "manifests": len(r.entries),
                "tags": sum(len(e.tags) for e in r.entries),
                "bytes_held": r.bytes_held,
                "held_since": r.time,
                "release_at": r.release_at(self.window),
                "action": "release now" if id(r) in due else "held",
            }
            for r in self.held
        ]

    @property
    def bytes_held(self) -> int:
        return sum(r.bytes_held for r in self.held)


def plan_release(
    client: RegistryClient,
    cfg: QuarantineConfig,
    now: datetime,
    *,
    inventory: Inventory | None = None,
    in_use=None,
    workers: int | None = None,
) -> ReleasePlan:
    """What the quarantine holds and what is due. ``in_use``: Kubernetes protection
    (``is_protected(repo, tags, digest)``): an in-use entry is released back, not deleted."""
    workers = workers or client.concurrency
    plan = ReleasePlan(cfg.window, now, read_records(client, cfg.namespace, workers=workers))
    plan.due = [r for r in plan.held if r.release_at(cfg.window) <= now]
    if not plan.due:
        return plan
    for rec in plan.due:
        for e in rec.entries:
            used = in_use.is_protected(rec.repository, e.tags, e.digest) if in_use is not None else []
            if used:
                plan.back.append((rec, e.digest, ",".join(e.tags), ", ".join(str(u) for u in used)))
    back = {(id(r), d) for r, d, _, _ in plan.back}
    gone: dict[str, tuple[int, dict[str, int]]] = {}
    keep: set[str] = set(_inventory_digests(inventory))
    for qrepo, recs in _by_qrepo(cfg.namespace, plan.held).items():
        due = [r for r in recs if r in plan.due]
        if not due:
            continue
        mans, _ = read_closure(client, qrepo, [e.digest for r in recs for e in r.entries], workers)
        leaving = {e.digest for r in due for e in r.entries}
        staying = [e.digest for r in recs if r not in due for e in r.entries]
        items, refs = final_deletes(qrepo, mans, leaving, staying, due)
        plan.deletes += items
        plan.references.update(refs)
        restored = [e.digest for r in due for e in r.entries if (id(r), e.digest) in back]
        for d in _closure(mans, staying + restored):  # what stays, here or back in its repository
            keep.add(d)
            keep.update(closure_blobs([mans[d]]))
        for _, d in items:
            if d in mans:
                gone[d] = (mans[d].size, closure_blobs([mans[d]]))
    plan.bytes_freed = released_bytes(gone, keep)
    return plan


def final_deletes(
    qrepo: str, mans: dict[str, Manifest], leaving: set[str], staying: list[str], records: list[Record]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], list[str]]]:
    """The quarantine repository's deletes when ``leaving`` leaves it: the records (those left
    empty; the caller re-PUTs the others first) and every held manifest no staying entry needs.
    The references order each record before what it lists and an index before its children."""
    needed = _closure(mans, staying)
    drop = [d for d in _closure(mans, sorted(leaving)) if d not in needed]
    items = [(qrepo, d) for d in drop]
    refs = {(qrepo, d): mans[d].referenced_manifests() for d in drop if d in mans}
    for r in records:
        if r.digest and not [e for e in r.entries if e.digest not in leaving]:
            items.insert(0, (qrepo, r.digest))
            refs[(qrepo, r.digest)] = [e.digest for e in r.entries]
    return items, refs


def leave(client: RegistryClient, namespace: str, rec: Record, digests: set[str], workers: int):
    """Entries ``digests`` leave record ``rec`` (undo): the record is re-PUT without them (or
    deleted when empty), then every held manifest of theirs no other record needs is deleted
    for good. Returns the ``DeleteResult``."""
    from ..prune.delete import delete_manifests

    qrepo = quarantine_repo(namespace, rec.repository)
    others = [r for r in read_records(client, namespace, repositories=rec.repository, workers=workers)]
    others = [r for r in others if r.digest != rec.digest and r.repository == rec.repository]
    rest = rec.without(digests)
    staying = [e.digest for r in others for e in r.entries] + [e.digest for e in rest.entries]
    mans, _ = read_closure(client, qrepo, staying + sorted(digests), workers)
    items, refs = final_deletes(qrepo, mans, digests, staying, [rec])
    if rest.entries:
        client.put_manifest(qrepo, rec.run, rest.to_bytes(), "application/vnd.oci.image.index.v1+json")
        if rec.digest:  # the old record (its tag moved to the new one) must not keep the rest
            items.insert(0, (qrepo, rec.digest))
            refs[(qrepo, rec.digest)] = [e.digest for e in rec.entries]
    return delete_manifests(client, items, references=refs, max_workers=workers)


def execute_release(
    client: RegistryClient, cfg: QuarantineConfig, plan: ReleasePlan, workers: int | None = None
):
    """Release back the in-use entries (undone), then delete the due ones for good. Returns
    (the undo result of the in-use entries or None, the ``DeleteResult``)."""
    from ..prune.delete import delete_manifests
    from .undo import undo_records

    workers = workers or client.concurrency
    back = None
    if plan.back:
        sel: dict[int, set[str]] = {}
        for r, d, _, _ in plan.back:
            sel.setdefault(id(r), set()).add(d)
        recs = [r for r in plan.due if id(r) in sel]
        back = undo_records(client, cfg, recs, apply=True, only=sel, workers=workers, leave_after=False)
    return back, delete_manifests(client, plan.deletes, references=plan.references, max_workers=workers)


def _by_qrepo(namespace: str, records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(quarantine_repo(namespace, r.repository), []).append(r)
    return out


def _closure(mans: dict[str, Manifest], roots) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        out.append(d)
        if d in mans:
            stack += mans[d].referenced_manifests()
    return out


def _inventory_digests(inv: Inventory | None):
    if inv is None:
        return
    for repo in inv.repositories.values():
        for d, m in repo.manifests.items():
            yield d
            for b in m.blobs:
                yield b.digest
