"""Cross-region replication: diff first, copy only what differs, byte for byte.

Plan (``plan_replication``): per repository in the rule's scope, the source tags (after the
rule's tag filters; signature/attestation tags follow their subjects) are compared by digest
with the target's tags (tags lists on both sides + HEAD per tag). The plan names the tags to
copy (missing or different), the tags already in sync, and, with ``deleteExtraneous``, the
target tags inside the rule's scope that the source no longer has. A plan with nothing to copy
costs reads only; executing it writes nothing.

Copy (``copy_repositories`` / ``copy_repository``): one item = one tag and its closure (index
children, config, layers). Blobs first (HEAD on the target; cross-repository mount when this
run has seen the blob in another target repository; otherwise a streamed upload, chunked in
constant memory for large blobs, digest checked by both ends), then child manifests by digest,
then the tag PUT with the exact source bytes and media type; the digest the target reports
must equal the source digest. Signature tags go after their subjects. Transient failures are
retried per item; an item that still fails is recorded with its reason and does not stop the
others. Nothing is persisted for correctness: the next run's diff finds what is still missing.

Deletes (``delete_extraneous``): only target tags inside the rule's scope (target repository
under the prefix, source name matching include/exclude, tag matching the tag filters), never a
digest that a kept tag or a kept index on the target still references, and never more than
``max_delete_fraction`` of the in-scope target tags without ``force``.
"""

import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ReplicationRule, TagFilter
from ..errors import (AuthError, DeletesDisabledError, DigestMismatchError, NotFoundError,
                     ReadOnlyError, RegistryError, UnsupportedManifestError)
from ..globs import match_any_tag, select
from ..models import INDEX_MEDIA_TYPES, Descriptor, Manifest, signature_subject
from ..oci import DEFAULT_CHUNK, RegistryClient
from ..util import atomic_write, bounded_map, human_bytes

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MONOLITHIC_MAX = 4 * 1024 * 1024       # blobs up to this size: one in-memory PUT
PREFETCH_MAX = 20_000                  # source manifests a plan keeps in memory for the copy


# --------------------------------------------------------------------------- plan model


@dataclass(slots=True)
class TagCopy:
    """One source tag that is missing or different on the target."""
    tag: str
    digest: str                       # source digest (what the target must end up with)
    target_digest: str | None = None  # what the target has now (None: missing)
    media_type: str = ""

    @property
    def reason(self) -> str:
        return "missing" if self.target_digest is None else "different"


@dataclass(slots=True)
class RepoPlan:
    source_repo: str
    target_repo: str
    to_copy: list[TagCopy] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    extraneous: list[tuple[str, str]] = field(default_factory=list)   # (tag, target digest) to delete
    kept_extraneous: list[tuple[str, str]] = field(default_factory=list)  # (tag, why not deletable)
    scope_tags: int = 0               # target tags inside the rule's scope (cap denominator)
    source_missing: bool = False      # the repository is gone from the source (extraneous only)
    errors: list[str] = field(default_factory=list)   # repository-level: nothing done here
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (source tag, why no digest)
    no_deletes: str | None = None     # why deletes are off in this repository (unknown digests)
    # source manifests fetched while planning (tags the target lacks: the copy needs the bytes
    # anyway, so the plan GETs them instead of a HEAD); digest -> Manifest
    prefetched: dict = field(default_factory=dict, repr=False)

    @property
    def lag(self) -> int:
        """Source tags missing or different on the target (or not comparable this run)."""
        return len(self.to_copy) + len(self.unresolved)

    @property
    def missing(self) -> int:
        return sum(1 for c in self.to_copy if c.target_digest is None)

    @property
    def different(self) -> int:
        return sum(1 for c in self.to_copy if c.target_digest is not None)


@dataclass(slots=True)
class ReplicationPlan:
    rule: str
    source: str
    target: str
    prefix: str
    delete_extraneous: bool
    repositories: list[RepoPlan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)       # planning problems outside one repo
    stats: dict = field(default_factory=dict)

    @property
    def lag(self) -> int:
        return sum(r.lag for r in self.repositories)

    @property
    def to_copy(self) -> int:
        return sum(len(r.to_copy) for r in self.repositories)

    @property
    def in_sync(self) -> int:
        return sum(len(r.in_sync) for r in self.repositories)

    @property
    def extraneous(self) -> int:
        return sum(len(r.extraneous) for r in self.repositories)

    @property
    def scope_tags(self) -> int:
        return sum(r.scope_tags for r in self.repositories)

    def repo(self, source_repo: str) -> RepoPlan | None:
        return next((r for r in self.repositories if r.source_repo == source_repo), None)

    def rows(self) -> list[dict]:
        """One row per tag decision (copy / in-sync / delete), for reports."""
        out = []
        for r in self.repositories:
            for c in r.to_copy:
                out.append({"repository": r.source_repo, "target_repository": r.target_repo,
                            "tag": c.tag, "action": "copy", "reason": c.reason,
                            "digest": c.digest, "target_digest": c.target_digest or ""})
            for t, d in r.extraneous:
                out.append({"repository": r.source_repo, "target_repository": r.target_repo,
                            "tag": t, "action": "delete", "reason": "not on source",
                            "digest": "", "target_digest": d})
            for t, why in r.kept_extraneous:
                out.append({"repository": r.source_repo, "target_repository": r.target_repo,
                            "tag": t, "action": "keep", "reason": why, "digest": "",
                            "target_digest": ""})
        return out


# --------------------------------------------------------------------------- pure helpers


def target_repository(prefix: str, repo: str) -> str:
    """``eu`` + ``library/nginx`` -> ``eu/library/nginx``; an empty prefix keeps the name."""
    p = (prefix or "").strip("/")
    return f"{p}/{repo}" if p else repo


def source_repository(prefix: str, target_repo: str) -> str | None:
    """The source name a target repository was replicated from, or None when it is not under
    the prefix (then it is outside every rule with that prefix)."""
    p = (prefix or "").strip("/")
    if not p:
        return target_repo
    if target_repo.startswith(p + "/") and len(target_repo) > len(p) + 1:
        return target_repo[len(p) + 1:]
    return None


def tag_matches(tag: str, tags: TagFilter) -> bool:
    """The rule's tag filter alone (include patterns, minus exclude patterns)."""
    if tags.include and match_any_tag(tags.include, tag) is None:
        return False
    if tags.exclude and match_any_tag(tags.exclude, tag) is not None:
        return False
    return True


def select_tags(tags: dict[str, str], tag_filter: TagFilter,
                children_of: Callable[[str], Iterable[str]] | None = None) -> dict[str, str]:
    """The tags (tag -> digest) a rule replicates from one source repository.

    Ordinary tags pass the tag filter. A signature/attestation tag (``sha256-<hex>.sig/.att/
    .sbom``) follows its subject: in scope when its subject digest is the digest of a selected
    tag (or a child of a selected index, looked up through ``children_of``), out of scope when
    the subject is a digest of an unselected tag; a signature whose subject no tag names (an
    orphan, or a subject tagged only by digest) is judged by the tag filter.
    """
    selected = {}
    sigs = {}
    for t, d in tags.items():
        if signature_subject(t):
            sigs[t] = d
        elif tag_matches(t, tag_filter):
            selected[t] = d
    if not sigs:
        return selected
    chosen = set(selected.values())
    tagged = {d for t, d in tags.items() if t not in sigs}
    unresolved = {t: signature_subject(t)[0] for t in sigs}
    # subjects that are children of selected indexes (looked up only when needed)
    need_children = [s for s in unresolved.values() if s not in chosen and s not in tagged]
    if need_children and children_of is not None:
        for d in sorted(chosen):
            chosen.update(children_of(d) or ())
    # signatures of signatures (cosign signs attestations too): resolve to a fixed point
    changed = True
    while changed:
        changed = False
        for t, subject in list(unresolved.items()):
            if subject in chosen:
                selected[t] = sigs[t]
                chosen.add(sigs[t])
                del unresolved[t]
                changed = True
    for t, subject in unresolved.items():
        if subject not in tagged and tag_matches(t, tag_filter):
            selected[t] = sigs[t]
    return selected


def diff_tags(source: dict[str, str], target: dict[str, str | None]) -> tuple[list[TagCopy], list[str]]:
    """(tags to copy, tags in sync). ``target`` maps a tag to its digest (None: unknown)."""
    to_copy, in_sync = [], []
    for t in sorted(source):
        d = source[t]
        have = target.get(t)
        if have == d:
            in_sync.append(t)
        else:
            to_copy.append(TagCopy(tag=t, digest=d, target_digest=have))
    return to_copy, in_sync


def in_delete_scope(tag: str, tag_filter: TagFilter, scope_digests: set[str]) -> bool:
    """Is a target tag inside the rule's tag scope? Ordinary tags: the tag filter. Signature
    tags: the filter, or their subject is a digest of an in-scope tag."""
    if tag_matches(tag, tag_filter):
        return True
    s = signature_subject(tag)
    return bool(s and s[0] in scope_digests)


def extraneous_tags(target: dict[str, str], selected_source: dict[str, str],
                    tag_filter: TagFilter, children_of: Callable[[str], Iterable[str]] | None = None
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """Target tags (tag -> digest) to delete because the source no longer has them.

    Returns (deletable [(tag, digest)], kept [(tag, why)], in-scope tag count). Only tags inside
    the rule's tag scope are considered. A DELETE works by digest and removes every tag on it,
    so a tag is deletable only when its digest is not needed by anything that stays: a target
    tag that stays, a source tag being replicated (same digest), a child of a staying or
    replicated index (``children_of(digest)`` lists an index's children; it is asked only about
    staying digests), or the subject of a signature tag that stays.
    """
    in_scope_plain = {t for t in target if not signature_subject(t) and tag_matches(t, tag_filter)}
    scope_digests = {target[t] for t in in_scope_plain}
    scope = {t for t in target if t in in_scope_plain or in_delete_scope(t, tag_filter, scope_digests)}
    candidates = {t: target[t] for t in scope if t not in selected_source}
    if not candidates:
        return [], [], len(scope)
    stays = {t: d for t, d in target.items() if t not in candidates}
    needed: dict[str, str] = {}
    for t, d in stays.items():
        needed.setdefault(d, f"shares digest {d[:19]} with kept tag {t}")
    for t, d in selected_source.items():
        needed.setdefault(d, f"digest {d[:19]} is replicated from the source as {t}")
    for t in list(stays) + list(selected_source):
        s = signature_subject(t)
        if s:
            needed.setdefault(s[0], f"digest {s[0][:19]} is the subject of kept signature {t}")
    if children_of is not None:   # every level: an index of indexes keeps its grandchildren
        work = sorted(set(needed))
        while work:
            d = work.pop()
            for c in children_of(d) or ():
                if c not in needed:
                    needed[c] = f"digest {c[:19]} is a child of kept index {d[:19]}"
                    work.append(c)
    deletable, kept = [], []
    for t in sorted(candidates):
        d = candidates[t]
        if d in needed:
            kept.append((t, needed[d]))
        else:
            deletable.append((t, d))
    return deletable, kept, len(scope)


def check_delete_cap(plan: ReplicationPlan, max_fraction: float = 0.5, force: bool = False) -> str | None:
    """None when the plan's deletes are within the cap (or forced), else why they are refused."""
    n = plan.extraneous
    if not n or force:
        return None
    scope = plan.scope_tags
    if scope and n / scope <= max_fraction:
        return None
    return (f"deleteExtraneous would delete {n} of {scope} in-scope tags on {plan.target} "
            f"({n / scope:.0%} > maxDeleteFraction {max_fraction:.0%}); nothing deleted. "
            "Re-run with --force to delete them")


def copy_phases(items: list[TagCopy]) -> tuple[list[TagCopy], list[TagCopy]]:
    """(ordinary tags, signature tags): signatures are copied after their subjects."""
    first = [c for c in items if not signature_subject(c.tag)]
    later = [c for c in items if signature_subject(c.tag)]
    return first, later


# --------------------------------------------------------------------------- planning


def _list_tags(client: RegistryClient, repo: str) -> list[str]:
    try:
        return client.list_tags(repo)
    except NotFoundError:
        return []


def _same_registry(a: RegistryClient, b: RegistryClient) -> bool:
    return a.url.rstrip("/") == b.url.rstrip("/")


def scope_repositories(src: RegistryClient, dst: RegistryClient, rule: ReplicationRule
                       ) -> tuple[list[str], list[str], list[str]]:
    """The rule's repositories: (source repositories in scope, source names of target
    repositories under the prefix that the source no longer has (only with deleteExtraneous),
    problems). The source catalog failing raises: nothing can be planned without it."""
    prefix = (rule.prefix or "").strip("/")
    same = _same_registry(src, dst)
    errors: list[str] = []
    if same and not prefix:
        return [], [], [f"rule {rule.rule_name}: source and target are the same registry "
                        f"({src.url}) without a prefix: nothing to replicate"]
    repos = [r for r in src.catalog() if select(r, rule.include, rule.exclude)]
    if same:  # never replicate our own replicas again (eu/eu/...)
        repos = [r for r in repos if source_repository(prefix, r) is None]
    removed: list[str] = []
    if rule.delete_extraneous:
        have = set(repos)
        try:
            for tr in dst.catalog():
                sr = source_repository(prefix, tr)
                if sr is None or sr in have or not select(sr, rule.include, rule.exclude):
                    continue
                if same and source_repository(prefix, sr) is not None:
                    continue
                removed.append(sr)
        except RegistryError as e:
            errors.append(f"target catalog unreadable, repositories removed from the source "
                          f"are not checked for extraneous tags: {e}")
    return sorted(repos), sorted(removed), errors


def plan_replication(src: RegistryClient, dst: RegistryClient, rule: ReplicationRule,
                     target_name: str | None = None, *, concurrency: int | None = None,
                     repositories: list[str] | None = None,
                     removed: list[str] | None = None) -> ReplicationPlan:
    """Compare the source and one target of a rule, tag by tag, by digest.

    Reads only: the source catalog (unless ``repositories`` is given: then those source
    repositories, plus ``removed`` ones the source no longer has), the tags lists of both
    sides, one HEAD per source tag and one per target tag that could be in sync (all target
    tags when ``deleteExtraneous`` is on). Registry-wide failures (source catalog) raise; a
    repository whose tags cannot be read is recorded in ``RepoPlan.errors`` and, in that
    repository, nothing is copied or deleted."""
    t0 = time.perf_counter()
    workers = concurrency or rule.concurrency
    src_before, dst_before = Counter(src.stats), Counter(dst.stats)
    plan = ReplicationPlan(rule=rule.rule_name, source=src.name, target=target_name or dst.name,
                           prefix=rule.prefix, delete_extraneous=rule.delete_extraneous)
    prefix = (rule.prefix or "").strip("/")
    if repositories is None:
        repositories, removed, errors = scope_repositories(src, dst, rule)
        plan.errors += errors
    else:
        repositories = [r for r in repositories if select(r, rule.include, rule.exclude)]
    repo_plans: dict[str, RepoPlan] = {r: RepoPlan(r, target_repository(prefix, r)) for r in repositories}
    if rule.delete_extraneous:
        for r in removed or []:
            repo_plans.setdefault(r, RepoPlan(r, target_repository(prefix, r), source_missing=True))

    # 1. tags lists, both sides
    jobs = [("src", r) for r, rp in repo_plans.items() if not rp.source_missing]
    jobs += [("dst", rp.target_repo) for rp in repo_plans.values()]

    def list_job(job):
        side, repo = job
        return _list_tags(src if side == "src" else dst, repo)

    src_tags: dict[str, list[str]] = {}
    dst_tags: dict[str, list[str]] = {}
    by_target = {rp.target_repo: rp for rp in repo_plans.values()}
    for (side, repo), tags, err in bounded_map(list_job, jobs, workers):
        rp = repo_plans.get(repo) if side == "src" else by_target[repo]
        if err is not None:
            rp.errors.append(f"{'source' if side == 'src' else 'target'} tags unreadable: {err}")
            continue
        (src_tags if side == "src" else dst_tags)[repo] = tags

    # 2. digests: HEAD every source tag the target also lists (GET the ones it lacks: their
    # bytes are needed to copy them); HEAD target tags that may be in sync (or all of them when
    # deletes are on)
    heads = []
    budget = [PREFETCH_MAX]   # manifests held in memory between plan and copy
    for r, rp in repo_plans.items():
        if rp.errors:
            continue
        stags = src_tags.get(r, []) if not rp.source_missing else []
        # a tag the filter excludes needs no digest; signature tags follow their subjects, so
        # they are resolved whatever the filter says
        stags = [t for t in stags if signature_subject(t) or tag_matches(t, rule.tags)]
        dtags = dst_tags.get(rp.target_repo, [])
        dset = set(dtags)
        heads += [("src" if t in dset or budget[0] <= 0 else "src-get", r, t) for t in stags]
        budget[0] -= sum(1 for t in stags if t not in dset)
        if rule.delete_extraneous:
            heads += [("dst", rp.target_repo, t) for t in dtags]
        else:
            # only tags that exist on both sides and could pass the filters need a HEAD
            sset = set(stags)
            heads += [("dst", rp.target_repo, t) for t in dtags if t in sset]

    src_head, dst_head = src.head_manifest, dst.head_manifest

    def head_job(job):
        side, repo, tag = job
        if side == "src-get":
            try:
                return src.get_manifest(repo, tag)
            except NotFoundError:
                return None
        return (src_head if side == "src" else dst_head)(repo, tag)

    src_dig: dict[str, dict[str, str]] = {}
    dst_dig: dict[str, dict[str, str]] = {}
    src_types: dict[tuple[str, str], str] = {}
    types: dict[str, str] = {}          # digest -> media type, from HEADs on either side
    dst_unknown: dict[str, set[str]] = {}
    for (side, repo, tag), h, err in bounded_map(head_job, heads, workers):
        if side == "src-get":
            side = "src"
            if isinstance(h, Manifest):
                repo_plans[repo].prefetched[h.digest] = h
        rp = repo_plans.get(repo) if side == "src" else by_target[repo]
        if err is not None:
            if side == "src":   # this tag cannot be compared: a failed item, the others go on
                rp.unresolved.append((tag, f"source digest unreadable: {err}"))
            else:               # unknown on the target: copy it again (idempotent), no deletes
                dst_unknown.setdefault(repo, set()).add(tag)
                rp.no_deletes = f"target tag {tag} unreadable ({err}): no deletes in this repository"
            continue
        if h is None:  # deleted between the list and the HEAD
            continue
        (src_dig if side == "src" else dst_dig).setdefault(repo, {})[tag] = h.digest
        if h.media_type:
            types[h.digest] = h.media_type
        if side == "src":
            src_types[(repo, tag)] = h.media_type

    # 3. per repository: select, diff, extraneous
    def children_of(repos: list[tuple[RegistryClient, str]], strict: bool):
        def f(digest):
            mt = types.get(digest)
            if mt and mt not in INDEX_MEDIA_TYPES:
                return []
            last = None
            for client, repo in repos:
                try:
                    m = client.get_manifest(repo, digest)   # by digest: the disk cache answers
                except NotFoundError as e:
                    last = e
                    continue
                except (RegistryError, ValueError) as e:
                    if strict:
                        raise
                    last = e
                    continue
                return m.referenced_manifests() if m.kind == "index" else []
            if strict and last is not None and not isinstance(last, NotFoundError):
                raise last
            return []
        return f

    for r, rp in repo_plans.items():
        if rp.errors:
            continue
        stags = src_dig.get(r, {})
        selected = select_tags(stags, rule.tags, children_of([(src, r)], False)) if stags else {}
        dtags = dst_dig.get(rp.target_repo, {})
        rp.to_copy, rp.in_sync = diff_tags(selected, dtags)
        for c in rp.to_copy:
            c.media_type = src_types.get((r, c.tag), "")
        rp.unresolved.sort()
        if rule.delete_extraneous and rp.unresolved and not rp.no_deletes:
            rp.no_deletes = (f"{len(rp.unresolved)} source tag(s) unreadable: no deletes in this "
                             "repository")
        if rule.delete_extraneous and dtags and not rp.no_deletes:
            lookups = [(dst, rp.target_repo)] + ([] if rp.source_missing else [(src, r)])
            try:
                rp.extraneous, rp.kept_extraneous, rp.scope_tags = extraneous_tags(
                    dtags, selected, rule.tags, children_of(lookups, True))
            except RegistryError as e:
                rp.errors.append(f"an index on the target is unreadable, so no deletes in this "
                                 f"repository: {e}")
                rp.extraneous, rp.kept_extraneous = [], []
    plan.repositories = [repo_plans[r] for r in sorted(repo_plans)]
    plan.stats = {
        "seconds": round(time.perf_counter() - t0, 3),
        "source_requests": dict(Counter(src.stats) - src_before),
        "target_requests": dict(Counter(dst.stats) - dst_before),
    }
    return plan


# --------------------------------------------------------------------------- copying


@dataclass(slots=True)
class RepoResult:
    source_repo: str
    target_repo: str
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)             # already in sync
    failed: list[tuple[str, str]] = field(default_factory=list)  # (tag, reason)
    vanished: list[str] = field(default_factory=list)            # gone from the source mid-run
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (tag, digest)
    delete_failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_uploaded: int = 0
    bytes_mounted: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_put: int = 0
    retries: int = 0
    lag_before: int = 0
    errors: list[str] = field(default_factory=list)              # repository-level problems
    seconds: float = 0.0

    @property
    def lag_after(self) -> int:
        """Source tags still missing or different on the target after this run."""
        return len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.delete_failed and not self.errors

    def row(self) -> dict:
        return {
            "repository": self.source_repo, "target_repository": self.target_repo,
            "copied": len(self.copied), "skipped": len(self.skipped), "failed": len(self.failed),
            "deleted": len(self.deleted), "lag_before": self.lag_before, "lag": self.lag_after,
            "bytes_uploaded": self.bytes_uploaded, "bytes_mounted": self.bytes_mounted,
            "blobs_uploaded": self.blobs_uploaded, "blobs_mounted": self.blobs_mounted,
            "blobs_present": self.blobs_present, "retries": self.retries,
            "errors": "; ".join(self.errors + [f"{t}: {r}" for t, r in self.failed][:5]),
        }


def new_result(p: RepoPlan) -> RepoResult:
    """The result a repository starts from: in-sync tags skipped, unresolved tags failed."""
    return RepoResult(p.source_repo, p.target_repo, skipped=list(p.in_sync), lag_before=p.lag,
                      errors=list(p.errors), failed=list(p.unresolved))


def is_transient(e: BaseException) -> bool:
    """Worth another try: connection errors, timeouts, broken streams, 5xx/429, and an
    upload session the registry forgot (restarted from a fresh stream)."""
    if isinstance(e, (AuthError, DigestMismatchError, UnsupportedManifestError,
                      DeletesDisabledError, ReadOnlyError)):
        return False
    if isinstance(e, NotFoundError):
        return bool(e.url and "/blobs/uploads/" in e.url)
    if isinstance(e, RegistryError):
        return e.status is None or e.status in TRANSIENT_STATUSES
    return isinstance(e, (ConnectionError, TimeoutError))


class _SourceVanished(Exception):
    pass


class Replicator:
    """Copies tags from one source registry to one target registry.

    Shared by every repository of a run (one per target): it remembers which blobs the target
    holds in which repository, so a shared base layer is uploaded once and mounted elsewhere,
    and it serialises work on one blob digest so concurrent tags never upload it twice."""

    def __init__(self, src: RegistryClient, dst: RegistryClient, *, concurrency: int = 8,
                 attempts: int = 3, backoff: float = 0.5, chunk_size: int = DEFAULT_CHUNK,
                 monolithic_max: int = MONOLITHIC_MAX, hints_path: str | os.PathLike | None = None):
        self.src = src
        self.dst = dst
        self.concurrency = max(1, concurrency)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.chunk_size = chunk_size
        self.monolithic_max = min(monolithic_max, chunk_size)
        self._where: dict[str, list[str]] = {}          # blob digest -> target repos holding it
        self._manifests: set[tuple[str, str]] = set()   # (target repo, digest) known present
        self._locks: dict[tuple, threading.Lock] = {}
        self._glock = threading.Lock()
        self._hints_path = Path(hints_path) if hints_path else None
        self._hints: dict[str, str] = self._load_hints()
        # one bound per target, shared by every batch copied through this Replicator
        self._slots = threading.BoundedSemaphore(self.concurrency)
        # target repositories that held no tag in scope at plan time: a blob HEAD there would
        # almost surely 404, so a blob not mountable from elsewhere is uploaded without asking
        # (at worst an interrupted earlier run left it there and it is uploaded once more)
        self._fresh: set[str] = set()

    # ---------------------------------------------------------------- mount hints (optional)

    def _load_hints(self) -> dict[str, str]:
        """Blob digest -> a target repository that held it in an earlier run. Only a hint for
        mounts (a wrong hint costs one POST that opens an upload we then use)."""
        if not self._hints_path:
            return {}
        try:
            data = json.loads(self._hints_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_hints(self, limit: int = 200_000) -> None:
        if not self._hints_path:
            return
        with self._glock:
            merged = dict(self._hints)
            for d, repos in self._where.items():
                if repos:
                    merged[d] = repos[-1]
        if len(merged) > limit:
            merged = dict(list(merged.items())[-limit:])
        try:
            atomic_write(self._hints_path, json.dumps(merged))
        except OSError as e:
            log.warning("cannot save mount hints %s: %s", self._hints_path, e)

    # ---------------------------------------------------------------- locking / knowledge

    def _lock(self, key: tuple) -> threading.Lock:
        with self._glock:
            lk = self._locks.get(key)
            if lk is None:
                lk = self._locks[key] = threading.Lock()
            return lk

    def _known_in(self, digest: str, repo: str) -> bool:
        with self._glock:
            return repo in self._where.get(digest, ())

    def _remember(self, digest: str, repo: str) -> None:
        with self._glock:
            lst = self._where.setdefault(digest, [])
            if repo in lst:
                lst.remove(repo)
            lst.append(repo)

    def _mount_sources(self, digest: str, repo: str) -> list[str]:
        with self._glock:
            seen = [r for r in reversed(self._where.get(digest, [])) if r != repo]
            hint = self._hints.get(digest)
        if hint and hint != repo and hint not in seen:
            seen.append(hint)
        return seen[:2]

    # ---------------------------------------------------------------- blobs

    def ensure_blob(self, src_repo: str, dst_repo: str, desc: Descriptor, acc: Counter) -> None:
        digest = desc.digest
        if self._known_in(digest, dst_repo):
            return
        with self._lock(("blob", digest)):
            if self._known_in(digest, dst_repo):
                return
            if dst_repo not in self._fresh and self.dst.head_blob(dst_repo, digest) is not None:
                self._remember(digest, dst_repo)
                acc["blobs_present"] += 1
                return
            location = None
            for from_repo in self._mount_sources(digest, dst_repo):
                location = self.dst.mount_blob(dst_repo, digest, from_repo)
                if location is None:
                    self._remember(digest, dst_repo)
                    acc["blobs_mounted"] += 1
                    acc["bytes_mounted"] += desc.size
                    return
                break  # the registry opened an upload session instead: upload into it
            self._upload(src_repo, dst_repo, desc, location)
            self._remember(digest, dst_repo)
            acc["blobs_uploaded"] += 1
            acc["bytes_uploaded"] += desc.size

    def _upload(self, src_repo: str, dst_repo: str, desc: Descriptor, location: str | None) -> None:
        digest = desc.digest
        if 0 <= desc.size <= self.monolithic_max:
            try:
                data = self.src.get_blob(src_repo, digest, max_bytes=self.monolithic_max + 1)
            except NotFoundError:
                raise _SourceVanished(f"blob {digest} is gone from the source") from None
            if len(data) != desc.size:
                raise DigestMismatchError(f"blob {digest}: source served {len(data)} bytes, the "
                                          f"manifest says {desc.size}", registry=self.src.name,
                                          repository=src_repo)
            self.dst.upload_blob(dst_repo, digest, data, location=location)
            return
        src = self.src

        def chunks():
            with src.stream_blob(src_repo, digest) as (it, _size):
                yield from it

        self.dst.upload_blob(dst_repo, digest, chunks, size=desc.size, location=location,
                             chunk_size=self.chunk_size)

    # ---------------------------------------------------------------- manifests

    def _source_manifest(self, repo: str, digest: str) -> Manifest:
        try:
            m = self.src.get_manifest(repo, digest)   # bytes checked against the digest
        except NotFoundError:
            raise _SourceVanished(f"manifest {digest} is gone from the source") from None
        return m

    def _ensure_closure(self, src_repo: str, dst_repo: str, m: Manifest, acc: Counter,
                        depth: int = 0) -> None:
        """Everything ``m`` references exists on the target before ``m`` is PUT."""
        if m.kind == "index":
            if depth > 4:
                raise UnsupportedManifestError(f"index {m.digest}: nested deeper than 4 levels",
                                               registry=self.src.name, repository=src_repo)
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
            if self.dst.head_manifest(dst_repo, digest) is None:
                cm = self._source_manifest(src_repo, digest)
                self._ensure_closure(src_repo, dst_repo, cm, acc, depth)
                self._put(dst_repo, digest, cm, acc)
            with self._glock:
                self._manifests.add(key)

    def _put(self, dst_repo: str, ref: str, m: Manifest, acc: Counter) -> None:
        got = self.dst.put_manifest(dst_repo, ref, m.raw, m.media_type)
        acc["manifests_put"] += 1
        if got != m.digest:
            raise DigestMismatchError(f"{dst_repo}:{ref}: target stored {got}, source is {m.digest}",
                                      registry=self.dst.name, repository=dst_repo)

    def copy_tag(self, plan: RepoPlan, item: TagCopy, acc: Counter) -> None:
        """One item: the tag's closure, then the tag itself with the exact source bytes.

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
        self._put(plan.target_repo, item.tag, m, acc)
        with self._glock:
            self._manifests.add((plan.target_repo, m.digest))

    def _copy_with_retry(self, plan: RepoPlan, item: TagCopy, acc: Counter) -> str | None:
        """None when copied; else the reason it failed (after retries for transient errors)."""
        for attempt in range(1, self.attempts + 1):
            try:
                self.copy_tag(plan, item, acc)
                return None
            except _SourceVanished as e:
                return f"vanished: {e}"
            except Exception as e:  # noqa: BLE001 - one item never stops the others
                if not is_transient(e) or attempt == self.attempts:
                    reason = str(e) or type(e).__name__
                    if attempt > 1:
                        reason += f" (after {attempt} attempts)"
                    log.warning("%s:%s -> %s: %s", plan.source_repo, item.tag, plan.target_repo, reason)
                    return reason
                acc["retries"] += 1
                delay = self.backoff * (2 ** (attempt - 1))
                log.info("%s:%s: transient failure, retry %d/%d in %.1fs: %s", plan.source_repo,
                         item.tag, attempt, self.attempts - 1, delay, e)
                time.sleep(delay + random.uniform(0, delay))
        return "not attempted"  # pragma: no cover

    # ---------------------------------------------------------------- repositories

    def copy(self, plans: list[RepoPlan], progress: Callable[[str], None] | None = None) -> list[RepoResult]:
        """Copy every planned tag of several repositories through one bounded pool.

        Ordinary tags first, then signature tags (a signature whose subject failed here fails
        too, naming the subject). A repository whose plan has errors is not touched."""
        results = {id(p): new_result(p) for p in plans}
        for p in plans:
            if p.scope_tags == 0 and not p.in_sync and not p.extraneous:
                self._fresh.add(p.target_repo)
        t0 = time.perf_counter()
        failed_digests: dict[str, set[str]] = {}
        lock = threading.Lock()
        phase1, phase2 = [], []
        for p in plans:
            if p.errors:
                continue
            a, b = copy_phases(p.to_copy)
            phase1 += [(p, c) for c in a]
            phase2 += [(p, c) for c in b]

        def run(job):
            p, c = job
            res = results[id(p)]
            s = signature_subject(c.tag)
            if s:
                with lock:
                    bad = s[0] in failed_digests.get(p.source_repo, set())
                if bad:
                    with lock:
                        res.failed.append((c.tag, f"subject {s[0][:19]} was not replicated in this run"))
                    return
            acc: Counter = Counter()
            with self._slots:
                reason = self._copy_with_retry(p, c, acc)
            with lock:
                for k, v in acc.items():
                    setattr(res, k, getattr(res, k) + v)
                if reason is None:
                    res.copied.append(c.tag)
                elif reason.startswith("vanished: "):
                    res.vanished.append(c.tag)
                else:
                    res.failed.append((c.tag, reason))
                    failed_digests.setdefault(p.source_repo, set()).add(c.digest)
            if progress:
                progress(f"{p.source_repo}:{c.tag} {'copied' if reason is None else 'failed'}")

        for phase in (phase1, phase2):
            for job, _, err in bounded_map(run, phase, self.concurrency):
                if err is not None:  # defensive: run() records its own failures
                    p, c = job
                    with lock:
                        results[id(p)].failed.append((c.tag, f"{type(err).__name__}: {err}"))
        elapsed = round(time.perf_counter() - t0, 3)
        out = []
        for p in plans:
            r = results[id(p)]
            r.copied.sort()
            r.failed.sort()
            r.seconds = elapsed
            out.append(r)
        return out

    def delete(self, plan: RepoPlan, res: RepoResult) -> None:
        """Delete the plan's extraneous target tags (by digest; the plan already proved no
        staying tag or index needs the digest). The caller checks the cap first."""
        done: set[str] = set()
        for tag, digest in plan.extraneous:
            if digest in done:
                res.deleted.append((tag, digest))
                continue
            try:
                self.dst.delete_manifest(plan.target_repo, digest)
                done.add(digest)
                res.deleted.append((tag, digest))
            except RegistryError as e:
                res.delete_failed.append((tag, str(e)))
                if isinstance(e, DeletesDisabledError):
                    for t, _ in plan.extraneous:
                        if t != tag and all(t != x for x, _ in res.deleted + res.delete_failed):
                            res.delete_failed.append((t, "deletes are disabled on the target"))
                    return


def copy_repositories(src: RegistryClient, dst: RegistryClient, plans: list[RepoPlan], *,
                      concurrency: int = 8, attempts: int = 3, backoff: float = 0.5,
                      replicator: Replicator | None = None, **kw) -> list[RepoResult]:
    """Copy the planned tags of several repositories (one bounded pool for all of them)."""
    rep = replicator or Replicator(src, dst, concurrency=concurrency, attempts=attempts,
                                   backoff=backoff, **kw)
    return rep.copy(plans)


def copy_repository(src: RegistryClient, dst: RegistryClient, repo_plan: RepoPlan, **kw) -> RepoResult:
    """Copy one repository's planned tags (see ``copy_repositories``)."""
    return copy_repositories(src, dst, [repo_plan], **kw)[0]


def verify_copied(dst: RegistryClient, plans: list[RepoPlan], results: list[RepoResult], *,
                  concurrency: int = 8) -> list[tuple[str, str, str]]:
    """Read back every copied tag on the target (HEAD) and compare with the source digest.
    Returns (repository, tag, problem) for each mismatch; also records it as a failure."""
    want = {(p.target_repo, c.tag): (p, c.digest) for p in plans for c in p.to_copy}
    by_target = {r.target_repo: r for r in results}
    jobs = [(r.target_repo, t) for r in results for t in r.copied]

    def head(job):
        repo, tag = job
        h = dst.head_manifest(repo, tag)
        return h.digest if h else None

    problems = []
    for (repo, tag), got, err in bounded_map(head, jobs, concurrency):
        p, expected = want.get((repo, tag), (None, None))
        if expected is None:
            continue
        if err is not None:
            why = f"read-back failed: {err}"
        elif got != expected:
            why = f"read-back digest {got} differs from the source digest {expected}"
        else:
            continue
        res = by_target[repo]
        res.copied.remove(tag)
        res.failed.append((tag, why))
        problems.append((p.source_repo, tag, why))
    return problems


# --------------------------------------------------------------------------- one target, end to end


@dataclass(slots=True)
class ReplicationResult:
    plan: ReplicationPlan
    repositories: list[RepoResult] = field(default_factory=list)
    deletes_refused: str | None = None
    dry_run: bool = False
    seconds: float = 0.0
    target_requests: dict = field(default_factory=dict)

    @property
    def failed_items(self) -> list[tuple[str, str, str]]:
        """(repository, tag, reason) for every item that failed."""
        out = []
        for r in self.repositories:
            out += [(r.source_repo, t, why) for t, why in r.failed]
            out += [(r.source_repo, t, f"delete failed: {why}") for t, why in r.delete_failed]
            out += [(r.source_repo, "*", e) for e in r.errors]
        out += [("*", "*", e) for e in self.plan.errors]
        return out

    @property
    def status(self) -> str:
        if self.dry_run:
            return "dry-run" if not self.failed_items else "failed"
        if self.failed_items:
            return "failed"
        if self.deletes_refused:
            return "refused"
        return "ok"

    def totals(self) -> dict:
        rs = self.repositories
        return {
            "repositories": len(rs),
            "copied": sum(len(r.copied) for r in rs),
            "skipped": sum(len(r.skipped) for r in rs),
            "failed": sum(len(r.failed) for r in rs),
            "deleted": sum(len(r.deleted) for r in rs),
            "lag_before": self.plan.lag,
            "lag": sum(r.lag_after for r in rs) if not self.dry_run else self.plan.lag,
            "bytes_uploaded": sum(r.bytes_uploaded for r in rs),
            "bytes_mounted": sum(r.bytes_mounted for r in rs),
            "blobs_uploaded": sum(r.blobs_uploaded for r in rs),
            "blobs_mounted": sum(r.blobs_mounted for r in rs),
            "seconds": self.seconds,
        }


def replicate_target(src: RegistryClient, dst: RegistryClient, rule: ReplicationRule,
                     target_name: str | None = None, *, dry_run: bool = False, force: bool = False,
                     max_delete_fraction: float = 0.5, attempts: int = 3, backoff: float = 0.5,
                     hints_path: str | os.PathLike | None = None, verify: bool = False,
                     **kw) -> ReplicationResult:
    """Plan, then (unless dry run) copy and delete, for one target of a rule. Used by the CLI
    path of the flow's tasks and by the benchmark; the flow splits the same steps into tasks."""
    t0 = time.perf_counter()
    before = Counter(dst.stats)
    plan = plan_replication(src, dst, rule, target_name)
    result = ReplicationResult(plan=plan, dry_run=dry_run)
    refused = check_delete_cap(plan, max_delete_fraction, force) if rule.delete_extraneous else None
    result.deletes_refused = refused
    if dry_run:
        result.repositories = [new_result(p) for p in plan.repositories]
    else:
        rep = Replicator(src, dst, concurrency=rule.concurrency, attempts=attempts, backoff=backoff,
                         hints_path=hints_path, **kw)
        result.repositories = rep.copy(plan.repositories)
        rep.save_hints()
        if verify:
            verify_copied(dst, plan.repositories, result.repositories, concurrency=rule.concurrency)
        if rule.delete_extraneous and not refused:
            by_repo = {r.source_repo: r for r in result.repositories}
            for p in plan.repositories:
                if p.extraneous and not p.errors and not p.no_deletes:
                    rep.delete(p, by_repo[p.source_repo])
    result.seconds = round(time.perf_counter() - t0, 3)
    result.target_requests = dict(Counter(dst.stats) - before)
    return result


def hints_file(cache_root: str | os.PathLike | None, target: RegistryClient) -> Path | None:
    """Where mount hints for a target live (inside the digest cache directory)."""
    if not cache_root:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{target.name}-{target.host}")
    return Path(cache_root) / "replicate" / f"{safe}.blobs.json"


def summary_line(result: ReplicationResult) -> str:
    t = result.totals()
    return (f"{result.plan.rule} -> {result.plan.target}: {t['copied']} copied, {t['skipped']} in sync, "
            f"{t['failed']} failed, {t['deleted']} deleted, lag {t['lag']}, uploaded "
            f"{human_bytes(t['bytes_uploaded'])}, mounted {human_bytes(t['bytes_mounted'])} "
            f"in {t['seconds']}s")


# --------------------------------------------------------------------------- flow helpers


def select_rules(config, name: str | None = None) -> list[ReplicationRule]:
    """The rules a run executes: the named one, or every rule. Errors name the config key."""
    from ..errors import ConfigError
    rules = list(config.replication or [])
    if not rules:
        raise ConfigError(f"{config.source or 'config'}: replication: no rules configured "
                          "(add e.g. replication: [{from: primary, to: [replica]}])")
    if name is None:
        names = [r.rule_name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{config.source or 'config'}: replication: two rules are both named "
                              f"{dupes[0]!r}: give them distinct `name:` keys")
        return rules
    for r in rules:
        if r.rule_name == name:
            return [r]
    import difflib
    known = [r.rule_name for r in rules]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    raise ConfigError(f"{config.source or 'config'}: replication: no rule named {name!r}{hint}")


def merge_plans(rule: ReplicationRule, source: str, target: str, parts: list[ReplicationPlan],
                errors: list[str] | None = None) -> ReplicationPlan:
    """One plan from the plans of several repository batches."""
    plan = ReplicationPlan(rule=rule.rule_name, source=source, target=target, prefix=rule.prefix,
                           delete_extraneous=rule.delete_extraneous, errors=list(errors or []))
    stats: Counter = Counter()
    for p in parts:
        plan.repositories += p.repositories
        plan.errors += p.errors
        stats["seconds"] += p.stats.get("seconds", 0)
        for side in ("source_requests", "target_requests"):
            for k, v in (p.stats.get(side) or {}).items():
                stats[f"{side}.{k}"] += v
    plan.repositories.sort(key=lambda r: r.source_repo)
    plan.stats = dict(stats)
    return plan


def build_report(result: "ReplicationResult | None", *, rule: ReplicationRule, source: str,
                 target: str, label: str | None = None, error: str | None = None,
                 started=None):
    """The run report for one (rule, target): per-repository counts (the main table, also the
    ``replication-<target>`` artifact), failed items, and the plan's decisions."""
    from ..report import Report
    rep = Report(flow="replicate", registry=label or target, key=f"replication-{target}",
                 title=f"replicate {rule.rule_name}: {source} → {target}")
    if started is not None:
        rep.started = started
    rep.summary["rule"] = rule.rule_name
    rep.summary["source"] = source
    rep.summary["target"] = target
    if rule.prefix:
        rep.summary["prefix"] = rule.prefix
    if result is None:
        rep.note(error or "the run failed before planning")
        rep.add_table("per repository", [], columns=_REPO_COLUMNS)
        return rep.finish("failed")
    t = result.totals()
    plan = result.plan
    rep.summary["dry run"] = result.dry_run
    rep.summary["repositories"] = t["repositories"]
    rep.summary["source tags in scope"] = plan.to_copy + plan.in_sync
    rep.summary["to copy (plan)"] = plan.to_copy
    rep.summary["copied"] = t["copied"]
    rep.summary["in sync (skipped)"] = t["skipped"]
    rep.summary["failed"] = t["failed"]
    rep.summary["lag before (tags)"] = t["lag_before"]
    rep.summary["lag (tags)"] = t["lag"]
    if rule.delete_extraneous:
        rep.summary["extraneous (plan)"] = plan.extraneous
        rep.summary["deleted"] = t["deleted"]
    rep.summary["bytes uploaded"] = t["bytes_uploaded"]
    rep.summary["bytes mounted"] = t["bytes_mounted"]
    rep.summary["blobs uploaded"] = t["blobs_uploaded"]
    rep.summary["blobs mounted"] = t["blobs_mounted"]
    rep.summary["seconds"] = result.seconds
    if result.target_requests:
        rep.summary["target requests"] = ", ".join(f"{k} {v}" for k, v in sorted(result.target_requests.items()))
    if result.deletes_refused:
        rep.note(f"deletes refused: {result.deletes_refused}")
    for e in plan.errors:
        rep.note(e)
    for p in plan.repositories:
        if rule.delete_extraneous and p.no_deletes:
            rep.note(f"{p.target_repo}: {p.no_deletes}")
    if error:
        rep.note(error)
    vanished = [(r.source_repo, t_) for r in result.repositories for t_ in r.vanished]
    if vanished:
        rep.note(f"{len(vanished)} tag(s) vanished from the source during the run (not copied): "
                 + ", ".join(f"{a}:{b}" for a, b in vanished[:10]))
    rows = [r.row() for r in result.repositories]
    rep.add_table("per repository", rows, columns=_REPO_COLUMNS)
    rep.add_table("failed items", [{"repository": a, "tag": b, "reason": c}
                                   for a, b, c in result.failed_items],
                  columns=["repository", "tag", "reason"])
    rep.add_table("plan", plan.rows(), columns=["repository", "target_repository", "tag", "action",
                                                "reason", "digest", "target_digest"])
    status = result.status
    if error and status in ("ok", "dry-run"):
        status = "failed"
    return rep.finish(status)


_REPO_COLUMNS = ["repository", "target_repository", "copied", "skipped", "failed", "deleted",
                 "lag_before", "lag", "bytes_uploaded", "bytes_mounted", "blobs_uploaded",
                 "blobs_mounted", "blobs_present", "retries", "errors"]


__all__ = [
    "TagCopy", "RepoPlan", "ReplicationPlan", "RepoResult", "ReplicationResult", "Replicator",
    "plan_replication", "copy_repository", "copy_repositories", "replicate_target",
    "select_tags", "diff_tags", "extraneous_tags", "check_delete_cap", "target_repository",
    "source_repository", "tag_matches", "copy_phases", "is_transient", "hints_file",
    "summary_line", "scope_repositories", "verify_copied", "select_rules", "merge_plans",
    "build_report", "new_result",
]
