"""One restore batch, phase by phase (``_Restorer``).

1. diff: current tags, and what each snapshot tag resolves to now (present / missing / moved);
2. the manifests the work needs (children first) and which the registry lacks;
3. the blobs of those manifests and which each repository lacks;
4. where each missing blob can come from (``restore_blobs``; HEADs only in a dry run);
5. which manifests can be re-created (bytes on the target, blobs and children available);
   then fetch only the blobs of those, and judge again on what arrived;
6. PUT missing manifests by digest, children first (level by level);
7. PUT the tags with the exact snapshot bytes;
8. verify every restored tag resolves to the snapshot's digest.
Anything that cannot be restored is reported per tag with the reason.
"""

import threading
from collections import Counter

from ..errors import NotFoundError
from ..oci import RegistryClient
from ..util import scrub
from .restore_blobs import BlobSupply
from .restore_referrers import restore_referrers
from .restore_result import (
    ACTION_CANNOT,
    ACTION_LEFT_MOVED,
    ACTION_MOVED,
    ACTION_PRESENT,
    ACTION_RESTORED,
    ACTION_WOULD_MOVE,
    ACTION_WOULD_RESTORE,
    RestoreRow,
)
from .restore_snapshot import SnapshotReader
from .snapshot import Snapshot
from .store import BackupError, ObjectStore


class _Restorer(SnapshotReader):
    """One restore batch: phases run across every (repository, item) pair of the batch."""

    def __init__(
        self,
        client: RegistryClient,
        store: ObjectStore,
        snap: Snapshot,
        dry_run: bool,
        blob_source: RegistryClient | None,
        concurrency: int,
        restore_moved: bool = True,
    ):
        super().__init__(snap, store)
        self.restore_moved = restore_moved
        self.c = client
        self.dry_run = dry_run
        self.src = blob_source
        self.workers = concurrency
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.blobs = BlobSupply(client, store, blob_source, self.holders, self.bump)
        # what the phases learn, (repository, digest) -> ...
        self.man_present: dict[tuple[str, str], bool] = {}  # the registry has the manifest
        self.blob_desc: dict[tuple[str, str], dict] = {}  # blobs of manifests to re-create
        self.blob_ok: dict[tuple[str, str], bool] = {}  # the blob is (or can be) there
        self.blob_why: dict[tuple[str, str], str] = {}  # why it cannot be
        self.missing_blob_set: set[tuple[str, str]] = set()
        self.man_ok: dict[tuple[str, str], bool] = {}  # the manifest can be (re-)created
        self.man_why: dict[tuple[str, str], str] = {}  # why it cannot be

    def bump(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _map(self, fn, items):
        return self.c.map(fn, items, self.workers)

    # -------------------------------------------------------------- the batch

    def run(self, repos: list[str]) -> list[RestoreRow]:
        rows = self._diff(repos)
        work = [r for r in rows.values() if r.state != "present" and not r.action]
        missing_man = self._find_missing_manifests(work)
        missing_blobs = self._find_missing_blobs(missing_man)
        self._provide(missing_blobs, dry=True)
        self._count_missing(work)
        self._judge(work)
        todo = [r for r in work if r.action != ACTION_CANNOT]
        if self.dry_run:
            for r in todo:
                r.action = ACTION_WOULD_MOVE if r.state == "moved" else ACTION_WOULD_RESTORE
                r.reason = self._plan_reason(r)
            return list(rows.values())
        todo = self._fetch_blobs(todo)
        put_failed = self._put_manifests(todo)
        self._put_tags(todo, put_failed)
        self._verify(todo)
        return list(rows.values())

    def run_with_referrers(self, repos: list[str]) -> list[RestoreRow]:
        """The tags, then the untagged referrers recorded for them (``restore_referrers``)."""
        rows = self.run(repos)
        return rows + restore_referrers(self, repos, rows)

    def _diff(self, repos: list[str]) -> dict[tuple[str, str], RestoreRow]:
        """1. the diff: current tags, and what each snapshot tag resolves to now."""
        c = self.c

        def list_tags(repo):
            try:
                return set(c.list_tags(repo))
            except NotFoundError:
                return set()

        current: dict[str, set[str]] = {}
        for repo, tags, err in self._map(list_tags, repos):
            if err is not None:
                raise err
            current[repo] = tags
        rows: dict[tuple[str, str], RestoreRow] = {}
        heads = []
        for repo in repos:
            for tag, digest in sorted(self.snap.tags(repo).items()):
                row = RestoreRow(repo, tag, digest, "", state="missing")
                rows[(repo, tag)] = row
                if tag in current[repo]:
                    heads.append((repo, tag))
        for (repo, tag), head, err in self._map(lambda it: c.head_manifest(*it), heads):
            if err is not None:
                raise err
            row = rows[(repo, tag)]
            if head is None:
                row.state = "missing"
            elif head.digest == row.digest:
                row.state, row.action = "present", ACTION_PRESENT
            else:
                row.state, row.current = "moved", head.digest
                if not self.restore_moved:
                    row.action = ACTION_LEFT_MOVED
                    row.reason = f"tag now points to {head.digest}; moved tags are left as they are"
        return rows

    def _find_missing_manifests(self, work: list[RestoreRow]) -> list[tuple[str, str]]:
        """2. manifests the work needs (children first), and which the registry lacks."""
        needed: dict[tuple[str, str], None] = {}
        for r in work:
            for d in self.closure(r.digest):
                needed[(r.repository, d)] = None
        for item, head, err in self._map(lambda it: self.c.head_manifest(*it), list(needed)):
            if err is not None:
                raise err
            self.man_present[item] = head is not None
        missing_man = [it for it, ok in self.man_present.items() if not ok]
        self.bump("missing_manifests", len(missing_man))
        return missing_man

    def _find_missing_blobs(self, missing_man: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """3. blobs of the manifests to re-create, and which the repository lacks."""
        for repo, d in missing_man:
            for b in self.blobs_of(d):
                self.blob_desc.setdefault((repo, b["digest"]), b)
        for item, size, err in self._map(lambda it: self.c.head_blob(*it), list(self.blob_desc)):
            if err is not None:
                raise err
            self.blob_ok[item] = size is not None
        missing_blobs = [it for it, ok in self.blob_ok.items() if not ok]
        self.missing_blob_set = set(missing_blobs)
        self.bump("missing_blobs", len(missing_blobs))
        return missing_blobs

    def _provide(self, blobs: list[tuple[str, str]], dry: bool) -> None:
        """4. where each missing blob can come from (HEADs only when ``dry``); a blob several
        repositories lack is fetched once, then mounted into the others."""
        by_digest: dict[str, list[str]] = {}
        for repo, d in blobs:
            by_digest.setdefault(d, []).append(repo)

        def provide_all(d: str) -> dict[str, bool | str]:
            out: dict[str, bool | str] = {}
            done_in: list[str] = []
            for repo in by_digest[d]:
                desc = self.blob_desc[(repo, d)]
                try:
                    out[repo] = self.blobs.provide_blob(repo, d, desc, dry=dry, known_in=done_in)
                except Exception as e:  # noqa: BLE001 - reported per tag
                    out[repo] = f"{desc['role']} blob {d}: {_err(e)}"
                if out[repo] is True:
                    done_in = [repo]
            return out

        for d, outcome, err in self._map(provide_all, sorted(by_digest)):
            for repo in by_digest[d]:
                res = f"blob {d}: {_err(err)}" if err is not None else outcome[repo]
                if res is True:
                    self.blob_ok[(repo, d)] = True
                    self.blob_why.pop((repo, d), None)
                else:
                    self.blob_ok[(repo, d)] = False
                    self.blob_why[(repo, d)] = res

    def _count_missing(self, work: list[RestoreRow]) -> None:
        """Per tag: the manifests and blobs its closure lacks (the report's counts)."""
        for r in work:
            closure = self.closure(r.digest)
            r.missing_manifests = sum(1 for d in closure if not self.man_present.get((r.repository, d)))
            r.missing_blobs = len(
                {
                    b["digest"]
                    for d in closure
                    for b in self.blobs_of(d)
                    if (r.repository, b["digest"]) in self.missing_blob_set
                }
            )

    def _can(self, repo: str, d: str) -> bool:
        """5. whether a manifest can be (re-)created: bytes on the target, blobs available,
        children available (memoized in ``man_ok``, the reason in ``man_why``)."""
        key = (repo, d)
        if key in self.man_ok:
            return self.man_ok[key]
        if self.man_present.get(key):
            self.man_ok[key] = True
            return True
        self.man_ok[key] = False
        m = self.man(d)
        if m is None:
            self.man_why[key] = f"manifest {d} is not described in the snapshot"
            return False
        if self.raw(d) is None:
            self.man_why[key] = self._raw_why.get(d, f"manifest {d} unavailable")
            return False
        for ch in m.get("children", []):
            if not self._can(repo, ch):
                self.man_why[key] = f"child {ch}: {self.man_why.get((repo, ch), 'cannot be restored')}"
                return False
        for b in self.blobs_of(d):
            bk = (repo, b["digest"])
            if not self.blob_ok.get(bk, False):
                self.man_why[key] = self.blob_why.get(bk, f"{b['role']} blob {b['digest']} missing")
                return False
        self.man_ok[key] = True
        return True

    def _judge(self, rs: list[RestoreRow]) -> None:
        """Mark the rows whose manifest cannot be (re-)created, with the reason."""
        self.man_ok.clear()
        self.man_why.clear()
        for r in rs:
            if not self._can(r.repository, r.digest):
                r.action = ACTION_CANNOT
                r.reason = self.man_why.get((r.repository, r.digest), "cannot be restored")

    def _fetch_blobs(self, todo: list[RestoreRow]) -> list[RestoreRow]:
        """5b. fetch only the blobs of manifests that can be completed (nothing is uploaded
        for a manifest that would stay incomplete), then judge again on what arrived."""
        wanted = sorted(
            {
                (r.repository, b["digest"])
                for r in todo
                for d in self.closure(r.digest)
                if not self.man_present.get((r.repository, d))
                for b in self.blobs_of(d)
                if (r.repository, b["digest"]) in self.missing_blob_set
            }
        )
        self._provide(wanted, dry=False)
        self._judge(todo)
        return [r for r in todo if r.action != ACTION_CANNOT]

    def _put_manifests(self, todo: list[RestoreRow]) -> dict[tuple[str, str], str]:
        """6. PUT missing manifests by digest, children first (level by level). Returns
        (repository, digest) -> why its PUT failed."""
        to_put: dict[tuple[str, str], None] = {}
        for r in todo:
            for d in self.closure(r.digest):
                if not self.man_present.get((r.repository, d)):
                    to_put[(r.repository, d)] = None
        depth_cache: dict[str, int] = {}

        def depth(d):
            if d not in depth_cache:
                ch = (self.man(d) or {}).get("children", [])
                depth_cache[d] = 0 if not ch else 1 + max(depth(x) for x in ch)
            return depth_cache[d]

        put_failed: dict[tuple[str, str], str] = {}
        for level in sorted({depth(d) for _, d in to_put}):
            items = [
                it
                for it in to_put
                if depth(it[1]) == level
                and not any((it[0], ch) in put_failed for ch in self.closure(it[1])[:-1])
            ]
            for item, _out, err in self._map(self._put_by_digest, items):
                if err is not None:
                    put_failed[item] = f"PUT manifest {item[1]} failed: {_err(err)}"
                else:
                    self.bump("manifests_put", 1)
        return put_failed

    def _put_tags(self, todo: list[RestoreRow], put_failed: dict[tuple[str, str], str]) -> None:
        """7. tags, with the exact snapshot bytes."""

        def put_tag(r: RestoreRow):
            failed = [
                put_failed[(r.repository, d)]
                for d in self.closure(r.digest)
                if (r.repository, d) in put_failed
            ]
            if failed:
                raise BackupError(failed[0])
            self.c.put_manifest(r.repository, r.tag, *self._put_bytes(r.digest))

        for r, _out, err in self._map(put_tag, todo):
            if err is not None:
                r.action, r.reason = ACTION_CANNOT, _err(err)
            else:
                self.bump("tags_put", 1)

    def _verify(self, todo: list[RestoreRow]) -> None:
        """8. verify: every restored tag resolves to the snapshot's digest."""
        put_ok = [r for r in todo if r.action != ACTION_CANNOT]
        for r, head, err in self._map(lambda r: self.c.head_manifest(r.repository, r.tag), put_ok):
            if err is not None:
                r.action, r.reason = ACTION_CANNOT, f"verify failed: {_err(err)}"
            elif head is None:
                r.action, r.reason = ACTION_CANNOT, "verify failed: tag not found after PUT"
            elif head.digest != r.digest:
                r.action, r.reason = ACTION_CANNOT, f"verify failed: tag resolves to {head.digest}"
            else:
                r.action = ACTION_MOVED if r.state == "moved" else ACTION_RESTORED
                r.reason = self._plan_reason(r, done=True)

    def _plan_reason(self, r: RestoreRow, done: bool = False) -> str:
        parts = []
        if r.state == "moved":
            parts.append(f"tag pointed to {r.current}")
        else:
            parts.append("tag missing")
        if r.missing_manifests:
            parts.append(f"{r.missing_manifests} manifest(s) {'re-created' if done else 'to re-create'}")
        if r.missing_blobs:
            parts.append(f"{r.missing_blobs} blob(s) {'supplied' if done else 'to supply'}")
        return "; ".join(parts)

    def _put_by_digest(self, item: tuple[str, str]) -> None:
        repo, d = item
        self.c.put_manifest(repo, d, *self._put_bytes(d))

    def _put_bytes(self, d: str) -> tuple[bytes, str]:
        """The exact bytes and media type to PUT for manifest ``d`` (``_can`` checked both)."""
        m, raw = self.man(d), self.raw(d)
        if m is None or raw is None:
            raise BackupError(self._raw_why.get(d, f"manifest {d} unavailable"))
        return raw, m["media_type"]


def _err(e: BaseException) -> str:
    return scrub(str(e))[:300] or type(e).__name__
