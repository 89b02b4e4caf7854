"""Verification after deletes (gc / expire): every kept tag still resolves, and the image it
resolves to is whole: every manifest it needs (index children) and every blob answers.

A kept tag that now points to another digest was moved by a user during the run (pushed after the
plan). That is information, not a problem (``VerifyResult.moved``), as long as the image it points
to now is whole: its manifest GET answers and matches its digest, its index children are present
and every blob it references answers HEAD 200. A problem, which fails the run: a kept tag that is
gone (404), a kept image with a blob or index child missing, a moved tag whose new image is broken,
and a moved tag that points to a manifest this run deleted (the re-check before deleting should
have left that repository alone).
"""

from dataclasses import dataclass, field

from ..errors import RegistryError
from ..models import Inventory
from ..oci import RegistryClient
from ..util import bounded_map

MOVED_NOTE = "pushed after the plan"
NOT_WHOLE = "the image it points to now is not whole: "


def short(digest: str) -> str:
    """``sha256:0123456789ab…`` for notes (tables carry the full digest)."""
    return digest[:19] + "…" if len(digest) > 19 else digest


@dataclass
class MovedTag:
    """A kept tag that a user moved to another image during the run."""

    repository: str
    tag: str
    planned: str  # the digest the plan kept
    now: str  # the digest the tag points to now
    problem: str | None = None  # why this move is a problem (None: its image is whole)

    def describe(self) -> str:
        return f"moved during the run from {short(self.planned)} to {short(self.now)} ({MOVED_NOTE})"


@dataclass
class VerifyResult:
    tags_checked: int = 0
    manifests_checked: int = 0
    blobs_checked: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, tag, problem)
    moved: list[MovedTag] = field(default_factory=list)

    COLUMNS = ["repository", "tag", "result", "planned digest", "digest now", "detail"]

    @property
    def moved_whole(self) -> list[MovedTag]:
        """Moved tags whose new image is whole: information only."""
        return [m for m in self.moved if m.problem is None]

    def rows(self) -> list[dict]:
        """The verify table: every moved tag (with the old and new digest), then every problem."""
        out = [
            {
                "repository": m.repository,
                "tag": m.tag,
                "result": "moved" if m.problem is None else "moved, problem",
                "planned digest": m.planned,
                "digest now": m.now,
                "detail": MOVED_NOTE + (": not a problem" if m.problem is None else f": {m.problem}"),
            }
            for m in self.moved
        ]
        moved_keys = {(m.repository, m.tag) for m in self.moved if m.problem}
        out += [
            {
                "repository": repo,
                "tag": tag,
                "result": "problem",
                "planned digest": "",
                "digest now": "",
                "detail": p,
            }
            for repo, tag, p in self.problems
            if (repo, tag) not in moved_keys
        ]
        return out


@dataclass
class _Checks:
    """What to HEAD after the tags: (repo, digest) -> the tags that need it; an owner is a tag
    name (a kept tag that did not move) or the MovedTag."""

    manifests: dict[tuple[str, str], list] = field(default_factory=dict)
    blobs: dict[tuple[str, str], list] = field(default_factory=dict)

    def need(self, kind: str, repo: str, digest: str, owner) -> None:
        getattr(self, kind).setdefault((repo, digest), []).append(owner)


def verify_kept(
    client: RegistryClient,
    inv: Inventory,
    kept: list[tuple[str, str, str]],
    max_workers: int | None = None,
    deleted: set[tuple[str, str]] | None = None,
) -> VerifyResult:
    """For each kept (repo, tag, digest): the tag resolves (to that digest, or, when a user moved
    it during the run, to a whole image), and every manifest its image needs (index children)
    and every blob answers HEAD 200. ``deleted``: the (repo, digest) pairs this run deleted."""
    res = VerifyResult()
    checks = _Checks()
    workers = max_workers or client.concurrency
    moved: list[MovedTag] = []
    for (repo, tag, digest), now, err in bounded_map(
        lambda it: client.head_manifest(it[0], it[1]), kept, workers
    ):
        res.tags_checked += 1
        if err is not None:
            res.problems.append((repo, tag, f"check failed: {err}"))
        elif now is None:
            res.problems.append((repo, tag, f"tag missing (expected {digest})"))
        elif now.digest != digest:
            moved.append(MovedTag(repo, tag, digest, now.digest))
        else:
            _kept_closure(inv, repo, tag, digest, checks)
    for m, found, err in bounded_map(lambda m: _walk_moved(client, m, deleted or set()), moved, workers):
        if err is not None:
            m.problem = m.problem or f"{NOT_WHOLE}check failed: {err}"
        if m.now == m.planned:  # moved back before we looked again: an ordinary kept tag
            _kept_closure(inv, m.repository, m.tag, m.planned, checks)
            continue
        res.moved.append(m)
        n_manifests, blobs = found or (0, [])
        res.manifests_checked += n_manifests
        for b in blobs:
            checks.need("blobs", m.repository, b, m)
    _head_all(client, checks, res, workers)
    for m in res.moved:
        if m.problem:
            res.problems.append((m.repository, m.tag, f"{m.describe()}, but {m.problem}"))
    return res


def _kept_closure(inv: Inventory, repo: str, tag: str, digest: str, checks: _Checks) -> None:
    """What an unmoved kept tag needs, from the inventory: its index children (those the scan
    saw) and every blob."""
    r = inv.repositories.get(repo)
    if r is None:
        return
    for info in r.closure([digest]):
        if info.digest != digest:
            checks.need("manifests", repo, info.digest, tag)
        for b in info.blobs:
            checks.need("blobs", repo, b.digest, tag)


def _walk_moved(client: RegistryClient, m: MovedTag, deleted: set[tuple[str, str]]) -> tuple[int, list[str]]:
    """Read the image a moved tag points to now, live: GET by tag (the digest is checked against
    the content), then every index child (HEAD, then its manifest, digest-checked). Sets
    ``m.now`` and, when the image is not whole, ``m.problem``; returns (manifests read, the
    blobs to HEAD)."""
    try:
        top = client.get_manifest(m.repository, m.tag)
    except RegistryError as e:  # a moved tag whose manifest cannot be read is the problem
        m.problem = f"{NOT_WHOLE}manifest GET {m.repository}:{m.tag} failed: {e}"
        return 0, []
    m.now = top.digest
    if m.now == m.planned:
        return 0, []
    if (m.repository, m.now) in deleted:
        m.problem = (
            f"it points to {m.now}, a manifest this run deleted (the re-check before "
            "deleting should have left this repository alone)"
        )
        return 1, []
    stack, seen, blobs, n = [top], {top.digest}, [], 0
    while stack:
        man = stack.pop()
        n += 1
        blobs += [b.digest for b in man.blob_descriptors()]
        for c in man.children:
            if c.digest in seen:
                continue
            seen.add(c.digest)
            try:
                if client.head_manifest(m.repository, c.digest) is None:
                    m.problem = f"{NOT_WHOLE}index child {c.digest} missing (HEAD 404)"
                    return n, blobs
                stack.append(client.get_manifest(m.repository, c.digest))
            except RegistryError as e:
                m.problem = f"{NOT_WHOLE}index child {c.digest} unreadable: {e}"
                return n, blobs
    return n, blobs


def _head_all(client: RegistryClient, checks: _Checks, res: VerifyResult, workers: int) -> None:
    """HEAD every queued manifest and blob once. A missing one is a problem of the unmoved kept
    tags that need it (one line, naming them) and of each moved tag that needs it."""

    def head(item):
        kind, (repo, digest) = item
        if kind == "manifests":
            return client.head_manifest(repo, digest) is not None
        return client.head_blob(repo, digest) is not None

    items = [("manifests", k) for k in sorted(checks.manifests)] + [
        ("blobs", k) for k in sorted(checks.blobs)
    ]
    for (kind, (repo, digest)), ok, err in bounded_map(head, items, workers):
        if kind == "manifests":
            res.manifests_checked += 1
        else:
            res.blobs_checked += 1
        if err is None and ok:
            continue
        what = f"index child {digest} missing" if kind == "manifests" else f"blob {digest} unreadable"
        why = f"{what}: {err or 'HEAD 404'}"
        owners = getattr(checks, kind)[(repo, digest)]
        for m in owners:
            if isinstance(m, MovedTag):
                m.problem = m.problem or NOT_WHOLE + why
        tags = sorted({o for o in owners if isinstance(o, str)})
        if tags:
            more = f" (needed by kept tag(s) {', '.join(tags[:5])}{' …' if len(tags) > 5 else ''})"
            res.problems.append((repo, tags[0], why + more))
