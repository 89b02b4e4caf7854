"""The one delete path: every job that deletes (gc, expire, replicate's deleteExtraneous) uses it;
``RegistryClient.delete_manifest`` is called from nowhere else.

``delete_manifests``: DELETE by digest with bounded concurrency, idempotent (404 = already
gone), in reference-depth order (``policy.graph.delete_levels``): signatures/referrers before
their subject and indexes before their children, so a run cut short never leaves an index
pointing at deleted children or a signature without its subject. What references what comes
from a gc / expire ``Inventory`` or from a small reference map ((repo, digest) -> the digests it
references; replication builds it from its plan). A 405 (deletes disabled) stops everything at
once and says so: no further DELETE is sent. With ``recheck``, every repository's tags are re-read just
before deleting (``changed_since_plan``): DELETE by digest removes every tag on the digest, so a
repository changed since the scan is left alone this run.

With a ``quarantine`` handle (``RunContext.quarantine``: the config's ``quarantine`` section is
on), every manifest is first held under the quarantine namespace with a record of where it came
from (``regkeeper.quarantine.hold``); only what was held is deleted, so every delete can be
undone until the window has passed. Without one (quarantine off, or a final delete inside the
quarantine itself) nothing changes.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import DeletesDisabledError, NotFoundError, RegistryError, RegkeeperError
from ..models import Inventory
from ..oci import RegistryClient
from ..policy.graph import delete_levels
from ..quarantine import Quarantine, in_namespace


@dataclass
class DeleteResult:
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest)
    already_gone: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, digest, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (repo, why nothing deleted)
    stopped: str | None = None  # why the run stopped early
    held: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest) put in quarantine
    held_bytes: int = 0  # what the held closures occupy (manifests + blobs, each once per record)
    # (repo, subject, new index digest or None = emptied and deleted): fallback indexes repaired
    fallback_updates: list[tuple[str, str, str | None]] = field(default_factory=list)

    def merge(self, other: "DeleteResult") -> None:
        self.fallback_updates += other.fallback_updates
        self.deleted += other.deleted
        self.already_gone += other.already_gone
        self.failed += other.failed
        self.skipped += other.skipped
        self.held += other.held
        self.held_bytes += other.held_bytes
        self.stopped = self.stopped or other.stopped


def changed_since_plan(
    client: RegistryClient, repo: str, digests: set[str], planned_tag_deletes: set[str], max_workers: int
) -> str | None:
    """Re-read a repository's tags just before deleting: DELETE by digest removes every tag on
    the digest, so a tag pushed (or moved back) onto a planned digest after the scan would go
    too. Returns why the repository must be left alone this run, or None."""
    try:
        listed = client.list_tags(repo)
    except NotFoundError:  # the repository is gone: its planned digests are too
        return None
    tags = [t for t in listed if t not in planned_tag_deletes]
    heads = client.map(lambda t: client.head_manifest(repo, t), tags, max_workers)
    return _first_change(heads, digests)


def _first_change(heads, digests: set[str]) -> str | None:
    """Why a repository is left alone: the first tag (in listed order) that could not be
    re-read or now points at a planned digest; None when none does."""
    for tag, head, err in heads:
        if err is not None:
            return f"tag {tag} could not be re-checked ({err})"
        if head is not None and head.digest in digests:
            return (
                f"tag {tag} now points to {head.digest[:19]}…, planned for deletion (pushed "
                "after the scan): nothing deleted in this repository; the next run re-plans"
            )
    return None


def delete_manifests(
    client: RegistryClient,
    items: list[tuple[str, str]],
    *,
    inventory: Inventory | None = None,
    references: Mapping[tuple[str, str], Iterable[str]] | None = None,
    max_workers: int | None = None,
    recheck: dict[str, set[str]] | None = None,
    quarantine: Quarantine | None = None,
) -> DeleteResult:
    """Delete (repo, digest) pairs. Transient failures are retried by the client; what still
    fails is listed and does not stop the others. 405 stops the whole run. The order comes
    from ``inventory`` and/or ``references`` (see ``policy.graph.delete_levels``); ``recheck``
    (repo -> the tags the plan deletes there) re-reads each repository's tags first;
    ``quarantine`` holds every manifest before it is deleted (what cannot be held is not)."""
    res = DeleteResult()
    workers = max_workers or client.concurrency
    if recheck is not None:
        res.skipped = _changed_repositories(client, items, recheck, workers)
        skip = {repo for repo, _ in res.skipped}
        items = [it for it in items if it[0] not in skip]
    if quarantine is not None and items:
        items = _hold(quarantine, client, items, inventory, workers, res)
    for phase in _phases(inventory, references, items):
        if res.stopped:
            res.failed += [(r, d, f"not attempted: {res.stopped}") for r, d in phase]
            continue
        _delete_phase(client, phase, workers, res)
    return res


def _hold(
    quarantine: Quarantine,
    client: RegistryClient,
    items: list[tuple[str, str]],
    inventory: Inventory | None,
    workers: int,
    res: DeleteResult,
) -> list[tuple[str, str]]:
    """Hold the items in quarantine; the ones held (or already gone) go on to DELETE."""
    held = quarantine.hold(client, items, inventory=inventory, workers=workers)
    res.failed += held.failed
    if held.superseded:  # an older record of this run, replaced by a merged one: final
        res.failed += delete_manifests(client, held.superseded, max_workers=workers).failed
    res.held += sorted(it for it in held.held if not in_namespace(it[0], quarantine.namespace))
    res.held_bytes += held.bytes_held
    return [it for it in items if it in held.held or it in held.gone]


def _changed_repositories(
    client: RegistryClient, items: list[tuple[str, str]], recheck: dict[str, set[str]], workers: int
) -> list[tuple[str, str]]:
    """(repo, why) for every repository changed since the plan (or whose tags cannot be
    re-read): nothing is deleted there. ``changed_since_plan`` for every repository at once:
    one concurrent round of tag lists, one of HEADs over all of them (not a round per
    repository: a repository with fewer tags than the pool's workers left it half idle)."""
    by_repo: dict[str, set[str]] = {}
    for repo, d in items:
        by_repo.setdefault(repo, set()).add(d)
    skipped: dict[str, str] = {}
    tags: dict[str, list[str]] = {}
    for repo, listed, err in client.map(client.list_tags, sorted(by_repo), workers):
        if isinstance(err, NotFoundError):  # the repository is gone: its planned digests are too
            continue
        if isinstance(err, RegistryError):
            skipped[repo] = f"tags could not be re-checked ({err})"
        elif err is not None:
            raise err
        else:
            tags[repo] = [t for t in listed or [] if t not in recheck.get(repo, set())]
    pairs = [(repo, t) for repo in sorted(tags) for t in tags[repo]]
    heads = client.map(lambda rt: client.head_manifest(*rt), pairs, workers)
    per_repo: dict[str, list] = {repo: [] for repo in tags}
    for (repo, tag), head, err in heads:
        per_repo[repo].append((tag, head, err))
    for repo, got in per_repo.items():
        why = _first_change(got, by_repo[repo])
        if why:
            skipped[repo] = why
    return sorted(skipped.items())


def _phases(
    inventory: Inventory | None, references, items: list[tuple[str, str]]
) -> list[list[tuple[str, str]]]:
    """The items grouped by reference depth, shallowest (deleted first) first."""
    phases: dict[int, list[tuple[str, str]]] = {}
    levels = delete_levels(inventory, items, references)
    for it in items:
        phases.setdefault(levels.get(it, 0), []).append(it)
    return [phases[ph] for ph in sorted(phases)]


def _delete_phase(
    client: RegistryClient, phase: list[tuple[str, str]], workers: int, res: DeleteResult
) -> None:
    """Delete one level concurrently: 404 = already gone, 405 = stop everything (the first 405
    stops the DELETEs not yet sent, in this level and every later one)."""

    def one(item):
        repo, digest = item
        if res.stopped:
            raise RegkeeperError(f"not attempted: {res.stopped}")
        try:
            return client.delete_manifest(repo, digest)
        except DeletesDisabledError as e:
            res.stopped = res.stopped or str(e)
            raise

    for (repo, digest), ok, err in client.map(one, phase, workers):
        if err is None:
            (res.deleted if ok else res.already_gone).append((repo, digest))
        elif isinstance(err, DeletesDisabledError):
            res.stopped = res.stopped or str(err)
            res.failed.append((repo, digest, str(err)))
        else:
            res.failed.append((repo, digest, str(err)))
