"""Content-addressed cache on disk for manifests and config blobs.

Content named by its digest never changes, so a cached entry is valid forever: a second scan
fetches no known digest again. Entries are written atomically (temp file + rename) and checked
against their digest when read, so a torn or tampered file is a miss, not bad data.
"""

import hashlib
import os
import threading
from pathlib import Path

from .util import atomic_write


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(digest: str, data: bytes) -> bool:
    algo, _, hexpart = digest.partition(":")
    if algo not in ("sha256", "sha512", "sha384"):
        return False
    return hashlib.new(algo, data).hexdigest() == hexpart


class DigestCache:
    """``<root>/<kind>/<algo>/<hex[:2]>/<hex>``; kinds: ``manifests``, ``blobs``.

    Extra per-manifest metadata (the media type the registry served) is kept in a sidecar
    ``.type`` file because the bytes alone do not always carry it (schema2 without mediaType).
    """

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root else None
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
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

    def get(self, kind: str, digest: str) -> tuple[bytes, str | None] | None:
        if not self.root:
            return None
        p = self._path(self.root, kind, digest)
        try:
            data = p.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self.misses += 1
            return None
        if not verify_digest(digest, data):
            with self._lock:
                self.misses += 1
            try:
                p.unlink()
            except OSError:
                pass
            return None
        mt = None
        try:
            mt = p.with_suffix(".type").read_text() or None
        except OSError:
            pass
        with self._lock:
            self.hits += 1
        return data, mt

    def put(self, kind: str, digest: str, data: bytes, media_type: str | None = None) -> None:
        if not self.root:
            return
        if not verify_digest(digest, data):
            return  # never cache content under the wrong name
        p = self._path(self.root, kind, digest)
        p.parent.mkdir(parents=True, exist_ok=True)
        if media_type:
            atomic_write(p.with_suffix(".type"), media_type)
        atomic_write(p, data)
