"""Hold: before the one delete path removes a manifest, its whole closure is kept referenced
under the quarantine namespace and recorded (``record.py``). Called by
``prune.delete.delete_manifests`` only, so gc, expire and replication's deleteExtraneous all hold
with no code of their own; what could not be held is not deleted."""

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..config import QuarantineConfig
from ..errors import NotFoundError
from ..models import Inventory
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..oci.mediatypes import OCI_INDEX
from ..util import utcnow
from .closure import Key, Linker, closure_blobs, held_bytes, put_many, read_closures
from .record import Entry, Record, in_namespace, quarantine_repo, run_tag

Why = Mapping[tuple[str, str], tuple[str, str]]  # (repo, digest) -> (rule, reason)


@dataclass
class HoldResult:
    held: set[tuple[str, str]] = field(default_factory=set)
    gone: set[tuple[str, str]] = field(default_factory=set)  # no longer there: nothing to hold
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, digest, why)
    records: list[Record] = field(default_factory=list)
    bytes_held: int = 0  # what this hold added (manifests + blobs of the closures, once per record)
    # (quarantine repo, digest): a record this run wrote before and replaced (merged into a new
    # one): the delete path removes it for good, so it keeps nothing alive
    superseded: list[tuple[str, str]] = field(default_factory=list)


class Quarantine:
    """The quarantine of one registry for one run (from ``RunContext.quarantine``)."""

    def __init__(self, cfg: QuarantineConfig, registry: str, run: str | None = None):
        self.cfg = cfg
        self.registry = registry
        self.run = run_tag(run or str(uuid.uuid4()))
        self.why: dict[tuple[str, str], tuple[str, str]] = {}
        self._linkers: dict[int, Linker] = {}
        self._written: dict[str, Record] = {}  # repository -> the record this run wrote for it
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    def explain(self, why: Why) -> None:
        """The rule and reason of planned deletes, written into the record."""
        self.why.update(why)

    def linker(self, client: RegistryClient) -> Linker:
        with self._lock:
            return self._linkers.setdefault(id(client), Linker(client))

    def hold(
        self,
        client: RegistryClient,
        items: list[tuple[str, str]],
        *,
        inventory: Inventory | None = None,
        workers: int | None = None,
        now: datetime | None = None,
    ) -> HoldResult:
        """Hold ``items`` (every repository at once: one concurrent round per step)."""
        res = HoldResult()
        workers = workers or client.concurrency
        roots: list[Key] = []
        for it in items:
            if in_namespace(it[0], self.namespace):
                res.held.add(it)  # a final delete inside the quarantine (release, undo)
            else:
                roots.append(it)
        if not roots:
            return res
        mans, missing = read_closures(client, roots, workers)
        bad: dict[Key, str] = {}
        rootset = set(roots)
        for k, why in missing:
            if k in rootset and why == "not found":
                res.gone.add(k)
            else:
                bad[k] = why
        self._link(client, mans, bad, workers)
        q = self.namespace
        bad.update(
            put_many(
                client,
                {k: m for k, m in mans.items() if k not in bad},
                workers,
                lambda r: quarantine_repo(q, r),
            )
        )
        self._record(client, roots, mans, bad, inventory, workers, now or utcnow(), res)
        return res

    def _link(self, client, mans: dict[Key, Manifest], bad: dict[Key, str], workers: int) -> None:
        """Mount every blob of the closures into the quarantine repositories; a manifest whose
        blob could not be linked is bad."""
        wanted = [
            (quarantine_repo(self.namespace, k[0]), k[0], b, size)
            for k, m in mans.items()
            for b, size in closure_blobs([m]).items()
        ]
        failed = {(q, b): why for q, b, why in self.linker(client).link_many(wanted, workers)}
        for k, m in mans.items():
            q = quarantine_repo(self.namespace, k[0])
            why = next(
                (
                    f"blob {b[:19]}… not linked: {failed[(q, b)]}"
                    for b in closure_blobs([m])
                    if (q, b) in failed
                ),
                None,
            )
            if why:
                bad[k] = why

    def _record(self, client, roots, mans, bad, inventory, workers, now, res: HoldResult) -> None:
        """The record of each repository (merged with what this run wrote there before), PUT
        concurrently; what it lists is held."""
        by_repo: dict[str, list[str]] = {}
        for repo, d in roots:
            by_repo.setdefault(repo, []).append(d)
        todo: list[tuple[str, Record, Record | None]] = []
        for repo, digests in sorted(by_repo.items()):
            tags = _tags_by_digest(client, repo, inventory, workers)
            entries = []
            for d in digests:
                k = (repo, d)
                if k in res.gone:
                    continue
                why = bad.get(k) or next((bad[c] for c in _below(mans, k) if c in bad), None)
                if why:
                    res.failed.append((repo, d, f"not held in quarantine ({why}): not deleted"))
                    continue
                m = mans[k]
                rule, reason = self.why.get(k, ("", ""))
                entries.append(Entry(d, m.media_type, m.size, tuple(sorted(tags.get(d, ()))), rule, reason))
            if entries:
                closure = [
                    mans[c]
                    for c in {k for e in entries for k in [(repo, e.digest), *_below(mans, (repo, e.digest))]}
                ]
                rec = Record(repo, self.run, now, entries, held_bytes(closure), self.registry)
                with self._lock:
                    before = self._written.get(repo)
                todo.append((repo, before.merged(rec) if before is not None else rec, before))

        def put(t: tuple[str, Record, Record | None]) -> str:
            q = quarantine_repo(self.namespace, t[0])
            return client.put_manifest(q, self.run, t[1].to_bytes(), OCI_INDEX)

        for (repo, rec, before), digest, err in client.map(put, todo, workers):
            if err is not None or digest is None:
                res.failed += [
                    (repo, e.digest, f"not held in quarantine (record not written: {err}): not deleted")
                    for e in rec.entries
                    if before is None or e not in before.entries
                ]
                continue
            rec.digest = digest
            with self._lock:
                self._written[repo] = rec
            if before is not None and before.digest and before.digest != digest:
                res.superseded.append((quarantine_repo(self.namespace, repo), before.digest))
            res.bytes_held += rec.bytes_held - (before.bytes_held if before is not None else 0)
            res.records.append(rec)
            res.held.update((repo, e.digest) for e in rec.entries)


def _below(mans: dict[Key, Manifest], k: Key) -> list[Key]:
    """The keys below ``k`` (index children, recursively)."""
    out: list[Key] = []
    stack = [k]
    while stack:
        m = mans.get(stack.pop())
        if m is None:
            continue
        kids = [(k[0], c) for c in m.referenced_manifests()]
        out += kids
        stack += kids
    return out


def _tags_by_digest(client, repo, inventory: Inventory | None, workers) -> dict[str, list[str]]:
    """The tags on each digest: from the scan's inventory, else read now."""
    tags: dict[str, str] = {}
    if inventory is not None and repo in inventory.repositories:
        tags = dict(inventory.repositories[repo].tags)
    else:
        try:
            listed = client.list_tags(repo)
        except NotFoundError:
            listed = []
        for t, head, err in client.map(lambda t: client.head_manifest(repo, t), listed, workers):
            if err is None and head is not None:
                tags[t] = head.digest
    out: dict[str, list[str]] = {}
    for t, d in tags.items():
        out.setdefault(d, []).append(t)
    return out
