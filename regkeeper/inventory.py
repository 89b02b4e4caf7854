"""Inventory: scan a registry into a typed snapshot.

repository -> tag -> digest -> manifest summary (kind, created, size, children, platforms),
index children, signature/attestation tags linked to their subjects, push times from storage.

Cost model (requests per tag): a tag whose digest is already known from the previous scan and
cached costs one HEAD; an unknown tag costs one GET (bytes + digest in one call). Every digest's
manifest and config is fetched at most once, ever (disk cache by digest). Configs (for
``created``) are fetched only for tags without a storage push time unless ``created="always"``.
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from .errors import NotFoundError, RegistryError, UnsupportedManifestError
from .globs import select
from .models import (
    CREATED_ANNOTATION,
    Inventory,
    Manifest,
    ManifestInfo,
    RepoInventory,
    parse_time,
)
from .oci import RegistryClient
from .referrers import discover_api, link_referrers
from .storage import StorageReader
from .util import atomic_write, succeeded, utcnow

log = logging.getLogger(__name__)


def manifest_info(m: Manifest) -> ManifestInfo:
    return ManifestInfo(
        digest=m.digest,
        media_type=m.media_type,
        kind=m.kind,
        size=m.size,
        config_digest=m.config.digest if m.config else None,
        blobs=m.blob_descriptors(),
        children=list(m.children),
        subject=m.subject.digest if m.subject else None,
        annotations=dict(m.annotations or {}),
        artifact_type=m.artifact_type,
    )


_STATE_LOCK = threading.Lock()


class _TagState:
    """tag -> digest from the previous scan, so known tags cost a HEAD and new ones a GET."""

    def __init__(self, client: RegistryClient):
        self.path = None
        self.data: dict[str, dict[str, str]] = {}
        root = client.cache.root
        if root:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{client.name}-{client.host}")
            self.path = Path(root) / "tags" / f"{safe}.json"
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.data = {}

    def known(self, repo: str, tag: str) -> str | None:
        return self.data.get(repo, {}).get(tag)

    def save(self, inv: Inventory, partial: bool) -> None:
        if not self.path:
            return
        with _STATE_LOCK:  # batches of one run scan concurrently: merge, never overwrite
            data: dict = {}
            if partial:
                try:
                    data = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    data = {}
            for name, r in inv.repositories.items():
                data[name] = dict(r.tags)
            atomic_write(self.path, json.dumps(data))


def scan(
    client: RegistryClient,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    repositories: list[str] | None = None,
    storage: StorageReader | None = None,
    created: Literal["auto", "always", "never"] = "auto",
    concurrency: int | None = None,
    progress: Callable[[str], None] | None = None,
    read_errors: list | None = None,
) -> Inventory:
    """Scan the registry (or the repositories matching the globs) into an Inventory.

    Steps: list repositories and their tags -> push times and untagged revisions from storage
    -> resolve every tag to its manifest -> fetch index children and untagged revisions ->
    created times from image configs -> save tag -> digest state for the next scan.

    Per-tag problems (a tag deleted mid-scan, a schema1 manifest) are recorded in
    ``RepoInventory.errors`` and the tag is left out; registry-wide failures raise. With
    ``read_errors`` (a list) any other failure to read one tag, or an index child, is appended
    to it as ``(repository, tag or digest, error)`` and the tag left out instead of raising
    (backup: the other tags are still copied, then the run fails naming exactly those)."""
    t0 = time.perf_counter()
    before = dict(client.stats)
    hits0, misses0 = client.cache.hits, client.cache.misses
    inc = list(include) if include else None
    exc = list(exclude) if exclude else None
    partial = bool(inc or exc or repositories)
    if repositories is None:
        repositories = [r for r in client.repositories() if select(r, inc, exc)]
    inv = Inventory(
        registry=client.name, scanned_at=utcnow(), push_time_source=storage.kind if storage else "none"
    )
    state = _TagState(client)
    s = _Scan(client, inv, concurrency or client.concurrency)
    s.list_tags(repositories)
    if progress:
        progress(f"{len(inv.repositories)} repositories, {inv.tag_count} tags")
    if storage is not None:
        s.read_storage(storage)
    s.resolve_tags(state, read_errors)
    s.fetch_children(read_errors)
    api, referrer_calls = discover_api(client, inv.repositories, s.workers, s.fetch_referrers, read_errors)
    s.mark_untagged()
    for name, r in inv.repositories.items():
        link_referrers(r, api.get(name))
    if created != "never":
        s.created_times(created)
        s.index_created()
    state.save(inv, partial)
    after = client.stats
    inv.stats = {
        "seconds": round(time.perf_counter() - t0, 3),
        "requests": {
            k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)
        },
        "cache_hits": client.cache.hits - hits0,
        "cache_misses": client.cache.misses - misses0,
        "repositories": len(inv.repositories),
        "tags": inv.tag_count,
        "referrers_mode": client.referrers_mode or "unknown",
        "referrer_requests": referrer_calls,
        "referrers": sum(len(v) for r in inv.repositories.values() for v in r.referrers.values()),
    }
    return inv


class _Scan:
    """The steps of one scan, sharing the client, the inventory being filled, the untagged
    revisions storage reported and the manifests fetched (by digest)."""

    def __init__(self, client: RegistryClient, inv: Inventory, workers: int):
        self.client = client
        self.inv = inv
        self.workers = workers
        self.revisions: dict[str, dict] = {}  # repo -> {digest: push time} from storage
        self.manifests: dict[str, Manifest] = {}

    def list_tags(self, repositories: list[str]) -> None:
        """1. the tags of every repository (an emptied repository has none)."""
        client = self.client

        def list_repo(repo: str) -> list[str]:
            try:
                return client.list_tags(repo)
            except NotFoundError:
                return []  # listed by _catalog but emptied: an empty repository

        for repo, tags in succeeded(self.client.map(list_repo, repositories, self.workers)):
            self.inv.repositories[repo] = RepoInventory(name=repo)
            self.inv.repositories[repo].tags = {t: "" for t in tags}

    def read_storage(self, storage: StorageReader) -> None:
        """2. push times + untagged revisions from storage."""

        def read(repo: str) -> tuple[dict[str, datetime], dict[str, datetime]]:
            return storage.push_times(repo), storage.revision_times(repo)

        for repo, res in succeeded(self.client.map(read, list(self.inv.repositories), self.workers)):
            r = self.inv.repositories[repo]
            times, revs = res
            r.push_times = {t: v for t, v in times.items() if t in r.tags}
            self.revisions[repo] = revs

    def resolve_tags(self, state: "_TagState", read_errors: list | None = None) -> None:
        """3. every tag to a digest: HEAD when known + cached, else GET by tag. A known digest
        is read from the disk cache once per scan, however many tags point at it."""
        client = self.client
        known: dict[str, Manifest] = {}

        def resolve(item: tuple[str, str]):
            repo, tag = item
            prev = state.known(repo, tag)
            cached = known.get(prev) if prev else None
            if prev and cached is None:
                cached = client.cached_manifest(prev)
                if cached is not None:
                    known[prev] = cached
            if cached is not None:
                head = client.head_manifest(repo, tag)
                if head is None:
                    return None
                if head.digest == prev:
                    return cached
                return client.get_manifest(repo, head.digest)
            try:
                return client.get_manifest(repo, tag)
            except NotFoundError:
                return None

        pairs = [(repo, tag) for repo, r in self.inv.repositories.items() for tag in r.tags]
        for (repo, tag), m, err in client.map(resolve, pairs, self.workers):
            r = self.inv.repositories[repo]
            if err is not None:
                if isinstance(err, (UnsupportedManifestError,)) or (
                    isinstance(err, RegistryError) and err.status in (400, 404)
                ):
                    r.errors.append(f"{tag}: {err}")
                    del r.tags[tag]
                    continue
                if read_errors is None:
                    raise err
                read_errors.append((repo, tag, err))
                del r.tags[tag]
                continue
            if m is None:  # deleted while we scanned
                del r.tags[tag]
                continue
            r.tags[tag] = m.digest
            self.manifests[m.digest] = m
            r.manifests.setdefault(m.digest, manifest_info(m))

    def fetch_children(self, read_errors: list | None = None) -> None:
        """4. index children and untagged revisions (by digest: the cache answers known ones)."""
        client = self.client

        def fetch(item):
            repo, digest = item
            try:
                return client.get_manifest(repo, digest)
            except NotFoundError:
                return None

        for _round in range(3):  # nested indexes are rare; three levels is plenty
            todo = self._missing_children()
            if not todo:
                break
            for (repo, digest), m, err in client.map(fetch, todo, self.workers):
                r = self.inv.repositories[repo]
                if err is not None and read_errors is not None:
                    read_errors.append((repo, digest, err))
                if err is not None or m is None:
                    r.errors.append(f"{digest}: {err or 'referenced but missing (404)'}")
                    # remember it so the graph still knows the reference is dangling
                    r.manifests.setdefault(
                        digest, ManifestInfo(digest=digest, media_type="", kind="image", size=0)
                    )
                    continue
                self.manifests[m.digest] = m
                r.manifests.setdefault(m.digest, manifest_info(m))

    def fetch_referrers(self, items: list[tuple[str, str]]) -> None:
        """Referrers the API listed that no tag or index led to (untagged): into the inventory."""
        fetched = self.client.map(lambda it: self.client.get_manifest(*it), items, self.workers)
        for (repo, _digest), m, err in fetched:
            if err is not None and not isinstance(err, NotFoundError):
                raise err
            if m is not None:
                self.manifests[m.digest] = m
                self.inv.repositories[repo].manifests.setdefault(m.digest, manifest_info(m))

    def _missing_children(self) -> list[tuple[str, str]]:
        out = []
        for repo, r in self.inv.repositories.items():
            for info in list(r.manifests.values()):
                for c in info.children:
                    if c.digest not in r.manifests:
                        out.append((repo, c.digest))
            for d in self.revisions.get(repo, []):
                if d not in r.manifests:
                    out.append((repo, d))
        return sorted(set(out))

    def mark_untagged(self) -> None:
        """Storage revisions no tag and no index references are the untagged manifests."""
        for r in self.inv.repositories.values():
            revs = self.revisions.get(r.name)
            if revs is not None:
                referenced = set(r.tags.values())
                for info in r.manifests.values():
                    referenced.update(c.digest for c in info.children)
                r.untagged = sorted(d for d in revs if d not in referenced)
                r.untagged_pushed = {d: revs[d] for d in r.untagged}

    def created_times(self, created: str) -> None:
        """5. created times from image configs (cached by digest): for tags without a storage
        push time, untagged manifests and index children, or everything with ``always``."""
        todo = []
        for repo, r in self.inv.repositories.items():
            tagged_without_push = {d for t, d in r.tags.items() if t not in r.push_times}
            children = {c.digest for p in r.manifests.values() for c in p.children}
            for d, info in r.manifests.items():
                if info.kind == "index" or not info.config_digest:
                    continue
                if created == "always" or d in tagged_without_push or d in r.untagged or d in children:
                    todo.append((repo, d))

        def get_created(item):
            repo, d = item
            m = self.manifests.get(d)
            if m is None:
                m = self.client.get_manifest(repo, d)
            return self.client.image_created(repo, m)

        for (repo, d), res, err in self.client.map(get_created, todo, self.workers):
            info = self.inv.repositories[repo].manifests[d]
            if err is not None:
                self.inv.repositories[repo].errors.append(f"{d}: config unreadable: {err}")
            elif res is not None:
                info.created, info.created_source = res

    def index_created(self) -> None:
        """An index is as old as its newest child (else its created annotation)."""
        for r in self.inv.repositories.values():
            for info in r.manifests.values():
                if info.kind == "index" and info.created is None:
                    times = [
                        created
                        for c in info.children
                        if c.digest in r.manifests and (created := r.manifests[c.digest].created)
                    ]
                    if times:
                        info.created, info.created_source = max(times), "config"
                    else:
                        t = parse_time(info.annotations.get(CREATED_ANNOTATION))
                        if t:
                            info.created, info.created_source = t, "annotation"


def count_tags(client: RegistryClient) -> tuple[int, int]:
    """(repositories, tags) from ``_catalog`` + ``tags/list`` only, no manifest request: the
    cheap image count for frequent capacity runs."""
    repos = client.repositories()

    def n_tags(repo: str) -> int:
        try:
            return len(client.list_tags(repo))
        except NotFoundError:
            return 0

    return len(repos), sum(n for _, n in succeeded(client.map(n_tags, repos)))
