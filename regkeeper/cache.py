"""Content-addressed cache on disk for manifests and config blobs.

Content named by its digest never changes, so a cached entry is valid forever: a second scan
fetches no known digest again. Entries are written atomically (temp file + rename) and checked
against their digest when read, so a torn or tampered file is a miss, not bad data.

One file per digest, read with one open and checked with one hash: the media type the registry
served (the bytes alone do not always carry it: schema2 without ``mediaType``) is a header line
in the same file, ``rkc1 <media type>\\n`` followed by the content. Caches written before that
kept the media type in a ``<hex>.type`` sidecar; such an entry is still read (two files, once)
and rewritten in the one-file layout, its sidecar removed.
"""

import hashlib
import os
import threading
from pathlib import Path

from .util import atomic_write

MAGIC = b"rkc1 "  # never the first bytes of a manifest or config (JSON)
_HEADER_MAX = 512  # a media type is at most 255 characters (RFC 6838)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(digest: str, data: bytes) -> bool:
    algo, _, hexpart = digest.partition(":")
    if algo not in ("sha256", "sha512", "sha384"):
        return False
    return hashlib.new(algo, data).hexdigest() == hexpart


def encode_entry(data: bytes, media_type: str | None) -> bytes:
    """The one-file layout: header line with the media type, then the content."""
    mt = (media_type or "").split("\n", 1)[0].strip()
    return MAGIC + mt.encode() + b"\n" + data


def decode_entry(digest: str, blob: bytes) -> tuple[bytes, str | None] | None:
    """``(content, media type)`` of a one-file entry whose content matches ``digest``; None when
    ``blob`` is not one (an old-layout file, or a torn or tampered one)."""
    if not blob.startswith(MAGIC):
        return None
    nl = blob.find(b"\n", len(MAGIC), _HEADER_MAX)
    if nl < 0:
        return None
    data = blob[nl + 1 :]
    if not verify_digest(digest, data):
        return None
    return data, blob[len(MAGIC) : nl].decode("utf-8", "replace") or None


class DigestCache:
    """``<root>/<kind>/<algo>/<hex[:2]>/<hex>``; kinds: ``manifests``, ``blobs``."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root else None
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._dirs: set[Path] = set()  # directories known to exist (no mkdir per write)
        if self.root:
            self.root.mkdir(parents=True, exist_ok=True)

    def __reduce__(self):
        # another process (a Dask worker) opens the same directory with its own lock and counters
        return (DigestCache, (self.root,))

    @staticmethod
    def _path(root: Path, kind: str, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if not hexpart or "/" in hexpart or not hexpart.isalnum():
            raise ValueError(f"not a digest: {digest!r}")
        return root / kind / algo / hexpart[:2] / hexpart

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def get(self, kind: str, digest: str) -> tuple[bytes, str | None] | None:
        """``(content, media type or None)``, or None on a miss. One file read and one digest
        check for an entry in the one-file layout."""
        if not self.root:
            return None
        p = self._path(self.root, kind, digest)
        try:
            with open(p, "rb") as f:
                blob = f.read()
        except OSError:  # absent (the usual miss), or unreadable: fetched again
            self._count(False)
            return None
        hit = decode_entry(digest, blob) or self._old_layout(p, kind, digest, blob)
        if hit is None:
            try:
                p.unlink()  # torn or tampered: the next put writes it again
            except OSError:
                pass
        self._count(hit is not None)
        return hit

    def _old_layout(self, p: Path, kind: str, digest: str, blob: bytes) -> tuple[bytes, str | None] | None:
        """An entry written before the one-file layout: the content alone, the media type in a
        ``.type`` sidecar. Rewritten in the one-file layout (best effort), sidecar removed."""
        if not verify_digest(digest, blob):
            return None
        side = p.with_suffix(".type")
        try:
            mt = side.read_text() or None
        except OSError:
            mt = None
        try:
            self._write(p, encode_entry(blob, mt))
            side.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache still answers
        return blob, mt

    def put(
        self, kind: str, digest: str, data: bytes, media_type: str | None = None, *, checked: bool = False
    ) -> None:
        """Store ``data`` under ``digest`` (with the media type it was served with).
        ``checked``: the caller has just verified the digest (no second hash)."""
        if not self.root:
            return
        if not checked and not verify_digest(digest, data):
            return  # never cache content under the wrong name
        self._write(self._path(self.root, kind, digest), encode_entry(data, media_type))

    def discard(self, kind: str, digest: str) -> None:
        """Forget ``digest`` (deleted from a repository: the next read by digest asks the
        registry, so a scan does not take the cached copy for a manifest that is still there)."""
        if self.root:
            self._path(self.root, kind, digest).unlink(missing_ok=True)

    def _write(self, p: Path, blob: bytes) -> None:
        parent = p.parent
        if parent in self._dirs:
            try:
                atomic_write(p, blob, mkdir=False)
                return
            except FileNotFoundError:  # the cache directory was removed under us
                pass
        parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._dirs.add(parent)
        atomic_write(p, blob, mkdir=False)
