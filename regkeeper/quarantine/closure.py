"""What holding and restoring share: a manifest's closure (index children, recursively), the
PUT order (children and subjects before what refers to them), linking the closure's blobs into
another repository of the same registry by cross-repository mount (the one transfer, never a
copy) and PUTting the manifests by digest with identical bytes and media type.

Each step runs over many repositories at once (one ``client.map`` per step, not per
repository): a gc run deleting in many repositories holds them all in a few concurrent rounds.
Keys are ``(repository, digest)``."""

import threading
from collections.abc import Iterable

from ..errors import NotFoundError, RegistryError
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..oci.mediatypes import FOREIGN_LAYER_TYPES
from ..oci.transfer import BlobTransfer
from ..policy.graph import delete_levels

Key = tuple[str, str]  # (repository, digest)


def read_closures(
    client: RegistryClient, roots: Iterable[Key], workers: int
) -> tuple[dict[Key, Manifest], list[tuple[Key, str]]]:
    """Every manifest reachable from ``roots`` (children recursively, in the root's repository),
    read concurrently level by level; and (key, why) for those that could not be read
    ("not found": gone)."""
    out: dict[Key, Manifest] = {}
    missing: list[tuple[Key, str]] = []
    todo = list(dict.fromkeys(roots))
    while todo:
        nxt: list[Key] = []
        for k, m, err in client.map(lambda k: client.get_manifest(k[0], k[1]), todo, workers):
            if err is not None or m is None:
                missing.append((k, "not found" if isinstance(err, NotFoundError) else str(err)))
                continue
            out[k] = m
            nxt += [(k[0], c) for c in m.referenced_manifests()]
        todo = [k for k in dict.fromkeys(nxt) if k not in out]
    return out, missing


def read_closure(
    client: RegistryClient, repo: str, digests: Iterable[str], workers: int
) -> tuple[dict[str, Manifest], list[tuple[str, str]]]:
    """``read_closures`` for one repository, keyed by digest."""
    got, missing = read_closures(client, [(repo, d) for d in digests], workers)
    return {k[1]: m for k, m in got.items()}, [(k[1], why) for k, why in missing]


def put_levels(manifests: dict[Key, Manifest]) -> list[list[Key]]:
    """The keys grouped for PUT: a child before its index, a subject before its referrers (both
    registries and the record index need what is referenced to exist first): the delete order
    of the one reference graph (``policy.graph.delete_levels``), reversed."""
    refs = {
        k: m.referenced_manifests() + ([m.subject.digest] if m.subject is not None else [])
        for k, m in manifests.items()
    }
    levels = delete_levels(None, list(manifests), refs)
    groups: dict[int, list[Key]] = {}
    for k in manifests:
        groups.setdefault(levels[k], []).append(k)
    return [groups[n] for n in sorted(groups, reverse=True)]


def closure_blobs(manifests: Iterable[Manifest]) -> dict[str, int]:
    """digest -> size of every blob the manifests use (foreign layers are not in the registry)."""
    out: dict[str, int] = {}
    for m in manifests:
        for b in m.blob_descriptors():
            if b.media_type not in FOREIGN_LAYER_TYPES:
                out[b.digest] = b.size
    return out


def held_bytes(manifests: Iterable[Manifest]) -> int:
    ms = list(manifests)
    return sum(m.size for m in ms) + sum(closure_blobs(ms).values())


class Linker:
    """Links blobs into repositories of one registry by cross-repository mount through the one
    transfer; each (repository, blob) once per run (thread-safe)."""

    def __init__(self, client: RegistryClient):
        self.client = client
        self.transfer = BlobTransfer(client)
        self._done: set[Key] = set()
        self._lock = threading.Lock()

    def link_many(
        self, wanted: Iterable[tuple[str, str, str, int]], workers: int, check_present: bool = False
    ) -> list[tuple[str, str, str]]:
        """Mount each (repo, from_repo, blob, size); (repo, blob, why) for those that could not be."""
        with self._lock:
            todo = list({(r, b): (r, f, b, s) for r, f, b, s in wanted if (r, b) not in self._done}.values())
            self._done.update((r, b) for r, _, b, _ in todo)

        def one(w: tuple[str, str, str, int]) -> None:
            repo, from_repo, b, size = w
            got = self.transfer.ensure(repo, b, size, mount_from=[from_repo], check_present=check_present)
            if not got.available:
                raise RegistryError(f"blob {b} could not be mounted into {repo} from {from_repo}")

        failed = [
            (w[0], w[2], str(err)) for w, _, err in self.client.map(one, todo, workers) if err is not None
        ]
        with self._lock:
            self._done.difference_update((r, b) for r, b, _ in failed)
        return failed

    def link(
        self, repo: str, from_repo: str, blobs: dict[str, int], workers: int, check_present: bool = False
    ) -> list[tuple[str, str]]:
        """Mount every blob into ``repo`` from ``from_repo``; (blob, why) for those that could not be."""
        got = self.link_many([(repo, from_repo, b, s) for b, s in blobs.items()], workers, check_present)
        return [(b, why) for _, b, why in got]


def put_many(
    client: RegistryClient, manifests: dict[Key, Manifest], workers: int, target=lambda repo: repo
) -> dict[Key, str]:
    """PUT every manifest by digest (identical bytes and media type) into ``target(repo)``,
    level by level across repositories; key -> why for those that failed (what refers to a
    failed one is not sent)."""
    failed: dict[Key, str] = {}
    for group in put_levels(manifests):
        send = []
        for k in group:
            m = manifests[k]
            below = m.referenced_manifests() + ([m.subject.digest] if m.subject else [])
            bad = next((c for c in below if (k[0], c) in failed), None)
            if bad:
                failed[k] = f"{bad[:19]}… it references could not be put"
            else:
                send.append(k)

        def put(k: Key) -> str:
            m = manifests[k]
            return client.put_manifest(target(k[0]), k[1], m.raw, m.media_type)

        for k, _, err in client.map(put, send, workers):
            if err is not None:
                failed[k] = str(err)
    return failed


def put_by_digest(
    client: RegistryClient, repo: str, manifests: dict[str, Manifest], workers: int
) -> list[tuple[str, str]]:
    """``put_many`` into one repository, keyed by digest."""
    failed = put_many(client, {(repo, d): m for d, m in manifests.items()}, workers)
    return [(k[1], why) for k, why in failed.items()]
