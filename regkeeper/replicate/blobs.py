"""Blob copy into the target, as the replicator does it today: HEAD on the target, else a
cross-repository mount from a target repository known to hold the blob (seen this run, or a
mount hint saved by an earlier run), else a streamed upload (one PUT for small blobs, chunked in
constant memory for large ones; digest checked by both ends). Also where the mount hints live
(``hints_file``) and how they are loaded and saved.

A later phase replaces ``BlobCopy`` with the ONE shared blob transfer
(``regkeeper/oci/transfer.py``: HEAD -> mount -> upload) used by every job.
"""

import json
import logging
import os
from collections import Counter
from pathlib import Path

from ..errors import DigestMismatchError, NotFoundError
from ..models import Descriptor
from ..oci import RegistryClient
from ..util import atomic_write

log = logging.getLogger(__name__)

MONOLITHIC_MAX = 4 * 1024 * 1024       # blobs up to this size: one in-memory PUT


class _SourceVanished(Exception):
    """A blob or manifest the plan named is gone from the source: the item is recorded as
    vanished (not failed) and the others go on."""


def hints_file(cache_root: str | os.PathLike | None, target: RegistryClient) -> Path | None:
    """Where mount hints for a target live (inside the digest cache directory)."""
    if not cache_root:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{target.name}-{target.host}")
    return Path(cache_root) / "replicate" / f"{safe}.blobs.json"


class BlobCopy:
    """The blob half of ``Replicator`` (a mixin): which target repositories hold which blob,
    mount hints across runs, and ``ensure_blob``.

    Relies on what ``Replicator.__init__`` sets: ``src``, ``dst``, ``chunk_size``,
    ``monolithic_max``, ``_glock`` and ``_lock()``; ``_init_blob_state`` sets the rest.

    To be replaced by the ONE shared blob transfer (``regkeeper/oci/transfer.py``)."""

    def _init_blob_state(self, hints_path: str | os.PathLike | None) -> None:
        self._where: dict[str, list[str]] = {}          # blob digest -> target repos holding it
        self._hints_path = Path(hints_path) if hints_path else None
        self._hints: dict[str, str] = self._load_hints()
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


    # ---------------------------------------------------------------- knowledge

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

