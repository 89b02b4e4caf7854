"""What a pull-through cache holds, read from its storage (``proxyCache.storage``, or the
registry's ``storage`` section: filesystem or S3).

A proxy registry's API cannot say what it holds: its tag list is the upstream's, and a manifest
GET by tag asks the upstream. Its storage can: every manifest it cached is a revision link
(``_manifests/revisions/<algo>/<hex>/link``, its mtime = when it was cached), every tag it
served a ``_manifests/tags/<tag>/current/link``, every byte a blob data file.

An **image** here is a root manifest of a repository: a revision no other cached index of the
repository lists as a child. It owns its children (present ones), its blobs (config, layers,
its own and its children's manifest blobs) and the tags naming it. Bytes are blob data files;
a blob shared by several images (in any repository) is stored once and freed only with the last.
"""

from dataclasses import dataclass, field
from datetime import datetime

from ..errors import RegkeeperError, UnsupportedManifestError
from ..globs import select
from ..oci.manifest import parse_manifest
from ..storage import FilesystemStorage, S3Storage


@dataclass
class CacheImage:
    repository: str
    digest: str
    cached: datetime  # the revision link's mtime: when the cache stored it
    tags: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # index children the cache holds
    blobs: set[str] = field(default_factory=set)  # every blob digest it needs (manifests included)
    kind: str = "image"
    problem: str | None = None  # a manifest blob missing or unreadable

    @property
    def manifests(self) -> list[str]:
        return [self.digest, *self.children]

    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass
class CacheInventory:
    root: str
    images: list[CacheImage] = field(default_factory=list)
    blob_sizes: dict[str, int] = field(default_factory=dict)  # digest -> data file bytes

    @property
    def repositories(self) -> list[str]:
        return sorted({i.repository for i in self.images})

    def image_bytes(self, img: CacheImage) -> int:
        """Every byte the image needs (shared blobs included)."""
        return sum(self.blob_sizes.get(b, 0) for b in img.blobs)

    @property
    def blob_bytes(self) -> int:
        return sum(self.blob_sizes.values())

    def users(self) -> dict[str, int]:
        """blob digest -> how many images need it."""
        out: dict[str, int] = {}
        for img in self.images:
            for b in img.blobs:
                out[b] = out.get(b, 0) + 1
        return out

    def per_repository(self) -> list[dict]:
        rows: dict[str, dict] = {}
        for img in self.images:
            r = rows.setdefault(
                img.repository, {"repository": img.repository, "images": 0, "tags": 0, "blobs": set()}
            )
            r["images"] += 1
            r["tags"] += len(img.tags)
            r["blobs"] |= img.blobs
        return [
            {
                "repository": r["repository"],
                "images": r["images"],
                "tags": r["tags"],
                "bytes": sum(self.blob_sizes.get(b, 0) for b in r["blobs"]),
            }
            for _, r in sorted(rows.items())
        ]


def read_cache(storage, include=None, exclude=None) -> CacheInventory:
    """The cache's inventory from its storage; ``include`` / ``exclude``: repository globs
    (the one matcher, ``globs.select``), every repository by default."""
    if not isinstance(storage, FilesystemStorage | S3Storage):
        raise RegkeeperError(
            "proxyCache: inventory and eviction read the cache's storage (proxyCache.storage, a "
            "directory, or a storage section of type s3); this registry has none"
        )
    storage.check()
    root = (
        str(storage.root)
        if isinstance(storage, FilesystemStorage)
        else f"s3://{storage.bucket}/{storage.prefix}"
    )
    inv = CacheInventory(root=root)
    for repo in storage.repositories():
        if not select(repo, include, exclude):
            continue
        inv.images.extend(_repository(storage, repo, inv.blob_sizes))
    return inv


def _repository(storage, repo: str, sizes: dict[str, int]) -> list[CacheImage]:
    revs = storage.revision_times(repo)
    parsed: dict[str, CacheImage] = {}
    child_of: dict[str, str] = {}
    for dg, when in revs.items():
        img = CacheImage(repo, dg, when)
        _read_manifest(storage, img, img.digest, sizes)
        parsed[dg] = img
    for dg, img in parsed.items():
        for c in img.children:
            if c in parsed and c != dg:
                child_of.setdefault(c, dg)
    roots = {dg: img for dg, img in parsed.items() if dg not in child_of}
    for img in roots.values():
        img.children = [c for c in img.children if c in parsed]
        for c in img.children:
            img.blobs |= parsed[c].blobs
    by_digest = storage.tag_digests(repo)
    for tag, dg in sorted(by_digest.items()):
        root = roots.get(dg) or roots.get(child_of.get(dg, ""))
        if root is not None:
            root.tags.append(tag)
    return [roots[d] for d in sorted(roots)]


def _read_manifest(storage, img: CacheImage, digest: str, sizes: dict[str, int]) -> None:
    """The manifest blob and what it references (config, layers; children's digests)."""
    raw = storage.read_blob(digest)
    _size(storage, digest, sizes)
    img.blobs.add(digest)
    if raw is None:
        img.problem = f"manifest blob {digest} missing from storage"
        return
    try:
        m = parse_manifest(raw, digest)
    except UnsupportedManifestError as e:
        img.problem = str(e)
        return
    img.kind = m.kind
    img.children = m.referenced_manifests()
    for d in m.blob_descriptors():
        img.blobs.add(d.digest)
        _size(storage, d.digest, sizes)


def _size(storage, digest: str, sizes: dict[str, int]) -> None:
    if digest not in sizes:
        n = storage.blob_size(digest)
        if n is not None:
            sizes[digest] = n
