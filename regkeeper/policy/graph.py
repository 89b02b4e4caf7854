"""The reference graph: what references what inside a repository, how protection spreads
through it, and the order in which deletes are safe.

Edges: an index -> its children; a signature / attestation tag (``sha256-<hex>.sig/.att/.sbom``)
or an OCI referrers-fallback index tag (``sha256-<hex>``) -> its subject; an OCI referrer (a
manifest with a ``subject`` field, tagged or not) -> its subject. Tags sharing a digest share
its fate. A tag on a referrer is a referrer tag (kind ``referrer``), never an image tag: it gets
no keepLast rank and no verdict of its own (it follows its subject).

Rules, applied to a fixpoint per repository by :class:`KeptSet` (protection only ever grows):

- ``DELETE /v2/<repo>/manifests/<digest>`` removes every tag on that digest, so a digest is
  deleted only when every tag on it is deleted; one kept tag keeps all of them
  (``shares digest with kept tag <t>``).
- A kept index keeps its children (tagged or not); a child is deleted only when no kept
  manifest in the repository references it.
- Signatures, referrers-fallback index tags and ``subject`` referrers live and die with their
  subject: a referrer is kept because its subject is, never for its age. One kept for its own
  sake (protect glob, in use) keeps its subject too, so our deletes never leave an orphan.
- Kubernetes (:class:`InUseProtection`): ``in_use.is_protected(repo, tag, digest)`` returning a
  non-empty list keeps the tag / digest, and that flows through the graph again.

Delete order: whatever references a manifest is deleted before it (:meth:`RepoGraph.delete_order`
for a plan, :func:`delete_levels` for the delete path), so a run stopped half-way never leaves an
index pointing at a deleted child or a signature without its subject.
"""

import heapq
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Protocol, TypeGuard

from ..models import Inventory, ManifestInfo, RepoInventory, signature_subject

# OCI 1.1 referrers tag schema (registries without the referrers API, e.g. distribution 2.8):
# an index tagged `sha256-<subject hex>` lists the subject's referrers.
_REFERRERS_TAG_RE = re.compile(r"^sha256-([0-9a-f]{64})$")


def tag_subject(tag: str) -> tuple[str, str] | None:
    """(subject digest, kind) for a tag that lives with a subject: cosign ``.sig/.att/.sbom``
    (kind sig/att/sbom) or the OCI referrers-fallback index tag (kind ``referrers``)."""
    s = signature_subject(tag)
    if s:
        return s
    m = _REFERRERS_TAG_RE.match(tag)
    if m:
        return f"sha256:{m.group(1)}", "referrers"
    return None


def short(digest: str) -> str:
    """``sha256:0123456789ab`` (algorithm + 12 hex), for reasons meant to be read."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def is_real(m: ManifestInfo | None) -> TypeGuard[ManifestInfo]:
    """The inventory records referenced-but-missing manifests as empty placeholders."""
    return m is not None and bool(m.media_type)


class InUse(Protocol):
    """What the planner needs from the Kubernetes side (regkeeper.kube)."""

    def is_protected(self, repo: str, tag: str | None, digest: str) -> list: ...


class RepoGraph:
    """The references of one repository, indexed both ways."""

    def __init__(self, r: RepoInventory):
        self.r = r
        self.present = {d for d, m in r.manifests.items() if is_real(m)}
        self.by_digest = r.tags_by_digest()
        self.subject_of: dict[str, tuple[str, str]] = {}  # tag -> (subject, kind)
        self.sigs_of: dict[str, list[str]] = {}  # subject -> tags
        for t, d in r.tags.items():
            s = tag_subject(t)
            if s is None:  # a tagged referrer (oras-py without the API): its manifest's subject
                m = r.manifests.get(d)
                s = (m.subject, "referrer") if m is not None and m.subject else None
            if s:
                self.subject_of[t] = s
                self.sigs_of.setdefault(s[0], []).append(t)
        self.referrers_of: dict[str, list[str]] = {}  # subject -> referrer digests
        for d in self.present:
            subject = r.manifests[d].subject
            if subject:
                self.referrers_of.setdefault(subject, []).append(d)

    def parents(self) -> dict[str, list[str]]:
        """child digest -> the indexes (present in the repository) that list it."""
        parents: dict[str, list[str]] = {}
        for d in self.present:
            for c in self.r.manifests[d].children:
                parents.setdefault(c.digest, []).append(d)
        return parents

    def delete_order(self, deleted: set[str]) -> list[str]:
        """Topological order over deleted manifests: index -> child, referrer -> subject,
        signature manifest -> subject (the first of each pair is deleted first)."""
        if not deleted:
            return []
        r = self.r
        succ: dict[str, list[str]] = {}
        indeg = dict.fromkeys(deleted, 0)

        def edge(a: str, b: str) -> None:
            if a != b and a in deleted and b in deleted:
                succ.setdefault(a, []).append(b)
                indeg[b] += 1

        for d in deleted:
            m = r.manifests[d]
            for c in m.children:
                edge(d, c.digest)
            if m.subject:
                edge(d, m.subject)
        for t, (s, _kind) in self.subject_of.items():
            edge(r.tags[t], s)
        heap = [d for d, n in indeg.items() if n == 0]
        heapq.heapify(heap)
        out: list[str] = []
        while heap:
            d = heapq.heappop(heap)
            out.append(d)
            for b in succ.get(d, ()):
                indeg[b] -= 1
                if indeg[b] == 0:
                    heapq.heappush(heap, b)
        if len(out) < len(deleted):  # a cycle cannot happen with content addressing; be safe
            seen = set(out)
            out.extend(sorted(d for d in deleted if d not in seen))
        return out


class KeptSet:
    """The kept digests of one repository (digest -> (reason, via tag)); :meth:`drain` spreads
    protection through the graph until nothing new is kept. The first reason recorded wins."""

    def __init__(self, graph: RepoGraph):
        self.g = graph
        self.kept: dict[str, tuple[str, str | None]] = {}
        self.queue: deque[str] = deque()

    def keep(self, digest: str, reason: str, tag: str | None = None) -> None:
        if digest not in self.kept:
            self.kept[digest] = (reason, tag)
            self.queue.append(digest)

    def drain(self) -> None:
        g = self.g
        r, present, q = g.r, g.present, self.queue
        while q:
            d = q.popleft()
            m = r.manifests.get(d)
            if m is not None:
                for c in m.children:
                    if c.digest in present:
                        self.keep(c.digest, f"child of kept index {short(d)}")
                if m.subject and m.subject in present:
                    self.keep(m.subject, f"subject of kept referrer {short(d)}")
            for ref in g.referrers_of.get(d, ()):
                self.keep(ref, f"referrer of kept {short(d)}")
            for t in g.sigs_of.get(d, ()):
                self.keep(r.tags[t], f"{g.subject_of[t][1]} of kept {short(d)}", t)
            for t in g.by_digest.get(d, ()):
                s = g.subject_of.get(t)
                if s and s[0] in present:
                    self.keep(s[0], f"subject of kept {s[1]} {t}")


class InUseProtection:
    """Kubernetes in-use protection for one repository: ask about everything the plan would
    delete, keep what is in use, let that flow through the graph; repeat until nothing new is
    kept. Every tag and every untagged digest is asked about at most once. ``tags`` /
    ``digests`` record the Kubernetes sources of what was kept because in use."""

    def __init__(self, kept: KeptSet, in_use: InUse):
        self.k = kept
        self.in_use = in_use
        self.tags: dict[str, tuple[str, ...]] = {}
        self.digests: dict[str, tuple[str, ...]] = {}
        self._asked_tags: set[str] = set()
        self._asked_digests: set[str] = set()

    def run(self) -> None:
        while True:
            self.k.drain()
            before = set(self.k.kept)
            new_tags = self._ask_tags(before)
            new_digests = self._ask_digests(before)
            if not (new_tags or new_digests):
                break
        self.k.drain()

    def _ask_tags(self, before: set[str]) -> bool:
        new = False
        r = self.k.g.r
        for t, d in r.tags.items():
            if d in before or t in self._asked_tags:
                continue
            self._asked_tags.add(t)
            src = self.in_use.is_protected(r.name, t, d)
            if src:
                self.tags[t] = tuple(str(s) for s in src)
                self.k.keep(d, "in use", t)
                new = True
        return new

    def _ask_digests(self, before: set[str]) -> bool:
        new = False
        g = self.k.g
        for d in g.present:
            if d in before or d in g.by_digest or d in self._asked_digests:
                continue
            self._asked_digests.add(d)
            src = self.in_use.is_protected(g.r.name, None, d)
            if src:
                self.digests[d] = tuple(str(s) for s in src)
                self.k.keep(d, "in use")
                new = True
        return new


Item = tuple[str, str]  # (repository, digest)


def delete_levels(
    inv: Inventory | None, items: list[Item], references: Mapping[Item, Iterable[str]] | None = None
) -> dict[Item, int]:
    """Order deletes so that whatever references a manifest goes before it: an index before its
    children, a referrer (OCI ``subject``) or cosign-tagged signature before its subject, at any
    depth. Level 0 first; items of one level are deleted concurrently. A run stopped half-way
    therefore never leaves an index pointing at a deleted child or a signature without its
    subject.

    What each item references comes from ``inv`` (gc / expire: :func:`inventory_references`)
    and/or ``references`` ((repo, digest) -> the digests it references in that repository;
    replication builds it from its plan without a full inventory); both are merged."""
    todo = set(items)
    fwd: dict[Item, set[str]] = inventory_references(inv, todo) if inv is not None else {}
    for it, targets in (references or {}).items():
        fwd.setdefault(it, set()).update(targets)
    refs = _referenced_by(fwd, todo)
    level: dict[Item, int] = {}

    def depth(it, trail=()):
        if it in level:
            return level[it]
        if it in trail:  # a reference cycle cannot be ordered: delete together
            return 0
        parents = refs.get(it, ())
        level[it] = 1 + max((depth(p, trail + (it,)) for p in parents), default=-1)
        return level[it]

    for it in todo:
        depth(it)
    return level


def manifest_references(children: Iterable[str], subject: str | None, tags: Iterable[str] = ()) -> set[str]:
    """The digests one manifest references inside its repository: its index children, its OCI
    ``subject``, and the subject named by any signature / referrers tag (``tags``) on it."""
    out = set(children)
    if subject:
        out.add(subject)
    for t in tags:
        sub = signature_subject(t)
        if sub:
            out.add(sub[0])
    return out


def inventory_references(inv: Inventory, items: Iterable[Item]) -> dict[Item, set[str]]:
    """(repo, digest) -> the digests it references, read from a gc / expire inventory."""
    out: dict[Item, set[str]] = {}
    tags_on: dict[str, dict[str, list[str]]] = {}
    for repo, digest in items:
        r = inv.repositories.get(repo)
        if r is None:
            continue
        if repo not in tags_on:
            tags_on[repo] = {}
            for t, d in r.tags.items():
                tags_on[repo].setdefault(d, []).append(t)
        info = r.manifests.get(digest)
        out[(repo, digest)] = manifest_references(
            [c.digest for c in info.children] if info is not None else [],
            info.subject if info is not None else None,
            tags_on[repo].get(digest, ()),
        )
    return out


def _referenced_by(fwd: Mapping[Item, Iterable[str]], todo: set[Item]) -> dict[Item, set[Item]]:
    """referenced (repo, digest) -> the (repo, digest) items in ``todo`` that reference it."""
    refs: dict[Item, set[Item]] = {}
    for (repo, digest), targets in fwd.items():
        if (repo, digest) not in todo:
            continue
        for tgt in targets:
            if (repo, tgt) in todo and tgt != digest:
                refs.setdefault((repo, tgt), set()).add((repo, digest))
    return refs
