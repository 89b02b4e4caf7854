"""Copying planned tags to the target (``Replicator``): one item = one tag and its closure.

Order per item: blobs (``blobs.py``, through the one blob transfer), then child manifests by
digest (an index's children, at most 4 levels), then the tag PUT with the exact source bytes and
media type; the digest the target reports must equal the source digest. Ordinary tags first,
signature tags after their subjects (``copy_phases``). Nothing is retried here: every HTTP call
is retried by the transport, a broken blob stream restarted by the transfer; an item that still
fails is recorded once with its reason (which says "after N attempts" when retries ran out) and
does not stop the others. Extraneous-tag deletes go through ``delete.py`` (the one delete
path), not through here.
"""

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from ..errors import DigestMismatchError, NotFoundError, UnsupportedManifestError
from ..models import Manifest, signature_subject
from ..oci import RegistryClient
from ..oci.transfer import CHUNK_SIZE, MONOLITHIC_MAX, BlobTransfer
from ..retry import RetryPolicy
from .blobs import BlobCopy, _SourceVanished
from .plan_model import RepoPlan, TagCopy
from .referrers import referrer_jobs, tagged_referrers
from .result import RepoResult, new_result

log = logging.getLogger(__name__)


def copy_phases(items: list[TagCopy]) -> tuple[list[TagCopy], list[TagCopy]]:
    """(ordinary tags, signature tags): signatures are copied after their subjects."""
    first = [c for c in items if not signature_subject(c.tag)]
    later = [c for c in items if signature_subject(c.tag)]
    return first, later


class Replicator(BlobCopy):
    """Copies tags from one source registry to one target registry.

    Shared by every repository of a run (one per target): it remembers which blobs the target
    holds in which repository, so a shared base layer is uploaded once and mounted elsewhere,
    and it serialises work on one blob digest so concurrent tags never upload it twice.
    Blob copy and mount hints: ``BlobCopy`` (blobs.py). Extraneous-tag deletes are not its
    job: ``delete.py`` sends them through the one delete path."""

    def __init__(
        self,
        src: RegistryClient,
        dst: RegistryClient,
        *,
        concurrency: int = 8,
        attempts: int = 3,
        backoff: float = 0.5,
        chunk_size: int = CHUNK_SIZE,
        monolithic_max: int = MONOLITHIC_MAX,
        hints_path: str | os.PathLike | None = None,
    ):
        """``attempts``/``backoff``: how often the blob transfer starts a blob whose stream broke
        (its ``RetryPolicy``); HTTP calls are retried by each client's transport."""
        self.src = src
        self.dst = dst
        self.concurrency = max(1, concurrency)
        transfer = BlobTransfer(
            dst,
            chunk_size=chunk_size,
            monolithic_max=monolithic_max,
            restarts=RetryPolicy(attempts=max(1, attempts), base=max(0.0, backoff)),
        )
        self._manifests: set[tuple[str, str]] = set()  # (target repo, digest) known present
        self._locks: dict[tuple, threading.Lock] = {}
        self._glock = threading.Lock()
        self._init_blob_state(transfer, hints_path)
        # one bound per target, shared by every batch copied through this Replicator
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._recipe = dict(
            concurrency=concurrency,
            attempts=attempts,
            backoff=backoff,
            chunk_size=chunk_size,
            monolithic_max=monolithic_max,
            hints_path=hints_path,
        )
        self.remote = False  # rebuilt in another process (a Dask worker) from a pickle

    def __reduce__(self):
        """A task argument sent to a process worker (Dask): rebuilt there with its own clients,
        locks and concurrency bound (per worker process), knowing the blobs known here."""
        with self._glock:
            where = {d: list(r) for d, r in self._where.items()}
        return (_rebuilt, (self.src, self.dst, self._recipe, where))

    # ---------------------------------------------------------------- locking

    def _lock(self, key: tuple) -> threading.Lock:
        with self._glock:
            lk = self._locks.get(key)
            if lk is None:
                lk = self._locks[key] = threading.Lock()
            return lk

    # ---------------------------------------------------------------- manifests

    def _source_manifest(self, repo: str, digest: str) -> Manifest:
        try:
            m = self.src.get_manifest(repo, digest)  # bytes checked against the digest
        except NotFoundError:
            raise _SourceVanished(f"manifest {digest} is gone from the source") from None
        return m

    def _ensure_closure(
        self, src_repo: str, dst_repo: str, m: Manifest, acc: Counter, depth: int = 0
    ) -> None:
        """Everything ``m`` references exists on the target before ``m`` is PUT."""
        if m.kind == "index":
            if depth > 4:
                raise UnsupportedManifestError(
                    f"index {m.digest}: nested deeper than 4 levels",
                    registry=self.src.name,
                    repository=src_repo,
                )
            for child in m.children:
                self._ensure_child(src_repo, dst_repo, child.digest, acc, depth + 1)
        else:
            for b in m.blob_descriptors():
                self.ensure_blob(src_repo, dst_repo, b, acc)

    def _ensure_child(self, src_repo: str, dst_repo: str, digest: str, acc: Counter, depth: int) -> None:
        key = (dst_repo, digest)
        with self._glock:
            if key in self._manifests:
                return
        with self._lock(("manifest",) + key):
            with self._glock:
                if key in self._manifests:
                    return
            # a repository with no tag in scope at plan time (``_fresh``) is not asked first: the
            # HEAD would almost surely 404 (at worst the child is PUT once more, idempotent)
            if dst_repo in self._fresh or self.dst.head_manifest(dst_repo, digest) is None:
                cm = self._source_manifest(src_repo, digest)
                self._ensure_closure(src_repo, dst_repo, cm, acc, depth)
                self._put(dst_repo, digest, cm, acc)
            with self._glock:
                self._manifests.add(key)

    def _put(self, dst_repo: str, ref: str, m: Manifest, acc: Counter) -> bool:
        """PUT the exact source bytes; True when the target answered with their digest (what it
        stored is known: the read-back after the copy skips this tag)."""
        got, confirmed = self.dst.put_manifest_checked(dst_repo, ref, m.raw, m.media_type)
        acc["manifests_put"] += 1
        if got != m.digest:
            raise DigestMismatchError(
                f"{dst_repo}:{ref}: target stored {got}, source is {m.digest}",
                registry=self.dst.name,
                repository=dst_repo,
            )
        return confirmed

    def copy_tag(self, plan: RepoPlan, item: TagCopy, acc: Counter, carried: list | None = None) -> bool:
        """One item: the tag's closure, then the tag itself with the exact source bytes. True
        when the target confirmed the tag's digest in its answer to the PUT.

        A signature/attestation tag brings its subject along by digest when the target lacks
        it (a subject tagged on the source is copied first, by its own item; one that is
        untagged on the source is copied here so the signature never dangles)."""
        m = plan.prefetched.get(item.digest) or self._source_manifest(plan.source_repo, item.digest)
        sig = signature_subject(item.tag)
        if sig:
            try:
                self._ensure_child(plan.source_repo, plan.target_repo, sig[0], acc, 1)
            except _SourceVanished:
                pass  # an orphan on the source too: replicate it as it is
        self._ensure_closure(plan.source_repo, plan.target_repo, m, acc)
        confirmed = self._put(plan.target_repo, item.tag, m, acc)
        with self._glock:
            self._manifests.add((plan.target_repo, m.digest))
        if sig and carried is not None:  # the referrers this tag carried, for the report
            carried += tagged_referrers(item.tag, m)
        return confirmed

    def _copy_item(
        self, plan: RepoPlan, item: TagCopy, acc: Counter, carried: list | None = None
    ) -> str | None:
        """None when copied; else why not (``vanished: ...`` when gone from the source).
        ``acc["unconfirmed"]``: the target gave no digest for the tag PUT (read it back)."""
        try:
            if not self.copy_tag(plan, item, acc, carried):
                acc["unconfirmed"] += 1
            return None
        except _SourceVanished as e:
            return self._vanished_or_broken(plan, item, e)
        except Exception as e:  # noqa: BLE001 - one item never stops the others
            reason = str(e) or type(e).__name__
            log.warning("%s:%s -> %s: %s", plan.source_repo, item.tag, plan.target_repo, reason)
            return reason

    def _vanished_or_broken(self, plan: RepoPlan, item: TagCopy, gone: _SourceVanished) -> str:
        """A 404 from the source: the tag vanished (deleted or moved since the plan: not a
        failure) only when the source tag no longer points at the planned digest; while it
        still does, the source image is incomplete and the item fails, naming what is missing."""
        try:
            head = self.src.head_manifest(plan.source_repo, item.tag)
        except Exception as e:  # noqa: BLE001 - cannot tell: a failure, never a silent skip
            return f"{gone} (404), and the source tag cannot be read again: {e}"
        if head is not None and head.digest == item.digest:
            reason = (
                f"{gone} (404) although the source tag still points at {item.digest}: the "
                "source image is incomplete"
            )
            log.warning("%s:%s -> %s: %s", plan.source_repo, item.tag, plan.target_repo, reason)
            return reason
        return f"vanished: {gone}"

    # ---------------------------------------------------------------- repositories

    def copy(self, plans: list[RepoPlan], progress: Callable[[str], None] | None = None) -> list[RepoResult]:
        """Copy every planned tag of several repositories through one bounded pool.

        Ordinary tags first, then signature tags (a signature whose subject failed here fails
        too, naming the subject), then the untagged referrers the source API listed, after
        their subjects (``referrers.py``). A repository whose plan has errors is not touched."""
        results = {id(p): new_result(p) for p in plans}
        for p in plans:
            if p.scope_tags == 0 and not p.in_sync and not p.extraneous:
                self._fresh.add(p.target_repo)
        t0 = time.perf_counter()
        failed: dict[str, set[str]] = {}  # source repo -> digests that failed this run
        lock = threading.Lock()
        phase1, phase2 = [], []
        for p in plans:
            if p.errors:
                continue
            a, b = copy_phases(p.to_copy)
            phase1 += [(p, c) for c in a]
            phase2 += [(p, c) for c in b]

        def run(job: tuple[RepoPlan, TagCopy]) -> None:
            reason = self._run_item(job, results[id(job[0])], failed, lock)
            if progress:
                p, c = job
                progress(f"{p.source_repo}:{c.tag} {'copied' if reason is None else 'failed'}")

        for phase in (phase1, phase2):
            # on the target client's shared threads: the copy batches of a run (several at once
            # on Prefect's task runner) share them instead of stacking a pool each
            for job, _, err in self.dst.map(run, phase, self.concurrency):
                if err is not None:  # defensive: run() records its own failures
                    p, c = job
                    with lock:
                        results[id(p)].failed.append((c.tag, f"{type(err).__name__}: {err}"))
        self._copy_referrers(plans, results, failed, lock)
        if self.remote:  # what this copy learned is seen by no other process: keep the hints
            self.save_hints()
        elapsed = round(time.perf_counter() - t0, 3)
        out = []
        for p in plans:
            r = results[id(p)]
            r.copied.sort()
            r.confirmed.sort()
            r.failed.sort()
            r.seconds = elapsed
            out.append(r)
        return out

    def _run_item(self, job: tuple[RepoPlan, TagCopy], res: RepoResult, failed: dict, lock) -> str | None:
        """One tag of ``copy`` (None when copied, else why not): skipped when its signature's
        subject failed this run."""
        p, c = job
        s = signature_subject(c.tag)
        if s:
            with lock:
                bad = s[0] in failed.get(p.source_repo, set())
            if bad:
                with lock:
                    res.failed.append((c.tag, f"subject {s[0][:19]} was not replicated in this run"))
                return "subject failed"
        acc: Counter = Counter()
        carried: list = []
        with self._slots:
            reason = self._copy_item(p, c, acc, carried)
        unconfirmed = acc.pop("unconfirmed", 0)
        with lock:
            for k, v in acc.items():
                setattr(res, k, getattr(res, k) + v)
            if reason is None:
                res.referrers_copied += carried
                res.copied.append(c.tag)
                if not unconfirmed:
                    res.confirmed.append(c.tag)
            elif reason.startswith("vanished: "):
                res.vanished.append(c.tag)
            else:
                res.failed.append((c.tag, reason))
                failed.setdefault(p.source_repo, set()).add(c.digest)
        return reason

    def _copy_referrers(self, plans: list[RepoPlan], results: dict, failed: dict, lock) -> None:
        """The untagged referrers (one job per subject, parents first): the exact source
        bytes PUT by digest after their closure; on a target without the API, their
        descriptors then added to the subject's ``sha256-<hex>`` index."""

        def run(job) -> None:
            p, subject, items = job
            res = results[id(p)]
            with lock:
                bad = subject in failed.get(p.source_repo, set())
            acc: Counter = Counter()
            done, why = [], {}
            with self._slots:
                for r in items:
                    if bad or r.parent in why:
                        why[r.digest] = f"its subject {r.parent[:19]} was not replicated in this run"
                        continue
                    try:
                        with self._glock:  # e.g. an entry of a fallback index copied in phase 2
                            there = (p.target_repo, r.digest) in self._manifests
                        if not there:
                            m = self._source_manifest(p.source_repo, r.digest)
                            self._ensure_closure(p.source_repo, p.target_repo, m, acc)
                            self._put(p.target_repo, r.digest, m, acc)
                            with self._glock:
                                self._manifests.add((p.target_repo, r.digest))
                        done.append(r)
                    except Exception as e:  # noqa: BLE001 - one referrer never stops the others
                        why[r.digest] = str(e) or type(e).__name__
                if p.fallback_update and done:
                    self._add_to_fallback(p, done, why)
            acc.pop("unconfirmed", None)
            with lock:
                for k, v in acc.items():
                    setattr(res, k, getattr(res, k) + v)
                res.referrers_copied += [
                    (subject, r.digest, r.artifact_type, r.found_by) for r in done if r.digest not in why
                ]
                res.referrers_failed += sorted(why.items())

        for job, _, err in self.dst.map(run, referrer_jobs(plans), self.concurrency):
            if err is not None:  # defensive: run() records its own failures
                with lock:
                    results[id(job[0])].referrers_failed += [(r.digest, str(err)) for r in job[2]]

    def _add_to_fallback(self, p: RepoPlan, done: list, why: dict) -> None:
        """Add what was PUT to each parent's ``sha256-<hex>`` index on the target."""
        by_parent: dict[str, list] = {}
        for r in done:
            by_parent.setdefault(r.parent, []).append(r)
        for parent, rs in by_parent.items():
            try:
                self.dst.update_fallback_index(p.target_repo, parent, add=tuple(r.descriptor for r in rs))
            except Exception as e:  # noqa: BLE001 - reported per referrer
                why.update({r.digest: f"fallback index {parent[:19]} not updated: {e}" for r in rs})


def _rebuilt(src: RegistryClient, dst: RegistryClient, recipe: dict, where: dict) -> Replicator:
    rep = Replicator(src, dst, **recipe)
    rep._where.update(where)
    rep.remote = True
    return rep


def copy_repositories(
    src: RegistryClient,
    dst: RegistryClient,
    plans: list[RepoPlan],
    *,
    concurrency: int = 8,
    attempts: int = 3,
    backoff: float = 0.5,
    replicator: Replicator | None = None,
    **kw,
) -> list[RepoResult]:
    """Copy the planned tags of several repositories (one bounded pool for all of them)."""
    rep = replicator or Replicator(
        src, dst, concurrency=concurrency, attempts=attempts, backoff=backoff, **kw
    )
    return rep.copy(plans)


def copy_repository(src: RegistryClient, dst: RegistryClient, repo_plan: RepoPlan, **kw) -> RepoResult:
    """Copy one repository's planned tags (see ``copy_repositories``)."""
    return copy_repositories(src, dst, [repo_plan], **kw)[0]
