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
from ..errors import NotFoundError, RegistryError
from ..models import Inventory
from ..oci import RegistryClient
from ..util import utcnow
from .closure import Linker, held_bytes, put_by_digest, read_closure
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
        self._written: dict[str, Record] = {}  # quarantine repo -> the record this run wrote there
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
        res = HoldResult()
        workers = workers or client.concurrency
        by_repo: dict[str, list[str]] = {}
        for repo, d in items:
            if in_namespace(repo, self.namespace):
                res.held.add((repo, d))  # a final delete inside the quarantine (release, undo)
            else:
                by_repo.setdefault(repo, []).append(d)
        for repo, digests in sorted(by_repo.items()):
            try:
                self._hold_repo(client, repo, digests, inventory, workers, now or utcnow(), res)
            except RegistryError as e:
                res.failed += [(repo, d, f"not held in quarantine ({e}): not deleted") for d in digests]
        return res

    def _hold_repo(self, client, repo, digests, inventory, workers, now, res: HoldResult) -> None:
        qrepo = quarantine_repo(self.namespace, repo)
        manifests, missing = read_closure(client, repo, digests, workers)
        bad: dict[str, str] = {}
        for d, why in missing:
            if d in digests and why == "not found":
                res.gone.add((repo, d))
            else:
                bad[d] = why
        failed = self.linker(client).link(qrepo, repo, _blobs(manifests), workers)
        if failed:  # any blob missing: the manifests using it cannot be put; keep it simple
            bad.update({d: f"blob {failed[0][0][:19]}… not linked: {failed[0][1]}" for d in digests})
        else:
            bad.update(put_by_digest(client, qrepo, manifests, workers))
        tags = _tags_by_digest(client, repo, inventory, workers)
        entries = []
        for d in digests:
            if (repo, d) in res.gone:
                continue
            if d in bad or any(c in bad for c in _below(manifests, d)):
                res.failed.append(
                    (repo, d, f"not held in quarantine ({bad.get(d, 'a child failed')}): not deleted")
                )
                continue
            m = manifests[d]
            rule, reason = self.why.get((repo, d), ("", ""))
            entries.append(Entry(d, m.media_type, m.size, tuple(sorted(tags.get(d, ()))), rule, reason))
        if not entries:
            return
        rec = Record(repo, self.run, now, entries, held_bytes(manifests.values()), self.registry)
        res.bytes_held += rec.bytes_held
        with self._lock:  # the same run held this repository before (another batch): one record
            before = self._written.get(qrepo)
        if before is not None:
            rec = before.merged(rec)
        rec.digest = client.put_manifest(
            qrepo, self.run, rec.to_bytes(), "application/vnd.oci.image.index.v1+json"
        )
        with self._lock:
            self._written[qrepo] = rec
        if before is not None and before.digest and before.digest != rec.digest:
            res.superseded.append((qrepo, before.digest))
        res.records.append(rec)
        res.held.update((repo, e.digest) for e in entries)


def _blobs(manifests) -> dict[str, int]:
    from .closure import closure_blobs

    return closure_blobs(manifests.values())


def _below(manifests, d: str) -> list[str]:
    out, stack = [], [d]
    while stack:
        m = manifests.get(stack.pop())
        if m is None:
            continue
        out += m.referenced_manifests()
        stack += m.referenced_manifests()
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
