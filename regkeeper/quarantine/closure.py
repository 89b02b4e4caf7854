"""What holding and restoring share: a manifest's closure (index children, recursively), the
PUT order (children and subjects before what refers to them), linking the closure's blobs into
another repository of the same registry by cross-repository mount (the one transfer, never a
copy) and PUTting the manifests by digest with identical bytes and media type."""

import threading
from collections.abc import Iterable

from ..errors import NotFoundError, RegistryError
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..oci.mediatypes import FOREIGN_LAYER_TYPES
from ..oci.transfer import BlobTransfer


def read_closure(
    client: RegistryClient, repo: str, digests: Iterable[str], workers: int
) -> tuple[dict[str, Manifest], list[tuple[str, str]]]:
    """Every manifest reachable from ``digests`` in ``repo`` (children recursively), read
    concurrently; and (digest, why) for those that could not be read (404: gone)."""
    out: dict[str, Manifest] = {}
    missing: list[tuple[str, str]] = []
    todo = list(dict.fromkeys(digests))
    while todo:
        nxt: list[str] = []
        for d, m, err in client.map(lambda x: client.get_manifest(repo, x), todo, workers):
            if err is not None or m is None:
                why = "not found" if isinstance(err, NotFoundError) else str(err)
                missing.append((d, why))
                continue
            out[d] = m
            nxt += [c for c in m.referenced_manifests() if c not in out]
        todo = [d for d in dict.fromkeys(nxt) if d not in out]
    return out, missing


def put_levels(manifests: dict[str, Manifest]) -> list[list[Manifest]]:
    """The manifests grouped for PUT: a child before its index, a subject before its
    referrers (both registries and the record index need what is referenced to exist first)."""
    level: dict[str, int] = {}

    def depth(d: str, seen: frozenset = frozenset()) -> int:
        if d in level:
            return level[d]
        m = manifests[d]
        below = [c for c in m.referenced_manifests() if c in manifests and c not in seen]
        if m.subject is not None and m.subject.digest in manifests and m.subject.digest not in seen:
            below.append(m.subject.digest)
        n = 1 + max((depth(c, seen | {d}) for c in below), default=-1)
        level[d] = n
        return n

    groups: dict[int, list[Manifest]] = {}
    for d in manifests:
        groups.setdefault(depth(d), []).append(manifests[d])
    return [groups[k] for k in sorted(groups)]


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
        self._done: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def link(
        self, repo: str, from_repo: str, blobs: dict[str, int], workers: int, check_present: bool = False
    ) -> list[tuple[str, str]]:
        """Mount every blob into ``repo`` from ``from_repo``; (blob, why) for those that could not be."""
        with self._lock:
            todo = [b for b in blobs if (repo, b) not in self._done]
            self._done.update((repo, b) for b in todo)

        def one(b: str) -> None:
            got = self.transfer.ensure(repo, b, blobs[b], mount_from=[from_repo], check_present=check_present)
            # a registry with one global blob store may answer every mount with an upload
            # session (202) although the blob is there already: then it is linked
            if not got.available and self.client.head_blob(repo, b) is None:
                raise RegistryError(f"blob {b} could not be mounted into {repo} from {from_repo}")

        failed = [(b, str(err)) for b, _, err in self.client.map(one, todo, workers) if err is not None]
        with self._lock:
            self._done.difference_update((repo, b) for b, _ in failed)
        return failed


def put_by_digest(
    client: RegistryClient, repo: str, manifests: dict[str, Manifest], workers: int
) -> list[tuple[str, str]]:
    """PUT every manifest into ``repo`` by digest (identical bytes and media type), level by
    level; (digest, why) for those that failed (what refers to a failed one is not sent)."""
    failed: dict[str, str] = {}
    for group in put_levels(manifests):
        send = []
        for m in group:
            below = m.referenced_manifests() + ([m.subject.digest] if m.subject else [])
            bad = next((c for c in below if c in failed), None)
            if bad:
                failed[m.digest] = f"{bad[:19]}… it references could not be put"
            else:
                send.append(m)
        put = lambda m: client.put_manifest(repo, m.digest, m.raw, m.media_type)  # noqa: E731
        for m, _, err in client.map(put, send, workers):
            if err is not None:
                failed[m.digest] = str(err)
    return list(failed.items())
