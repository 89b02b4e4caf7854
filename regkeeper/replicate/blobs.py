"""The replicator's blob memory around the ONE blob transfer (``regkeeper/oci/transfer.py``):
which target repositories hold which blob (seen this run, or a mount hint saved by an earlier
run, ``hints_file``), which target repositories are fresh (no HEAD needed), and which blobs
failed this run (an item needing one fails at once, naming it: the failing blob is not fetched
again). HEAD, mount, upload, cancel and restarts are the transfer's.
"""

import json
import logging
import os
import threading
from collections import Counter
from pathlib import Path

from ..errors import SourceBlobMissing
from ..models import Descriptor
from ..oci import RegistryClient
from ..oci.transfer import MOUNTED, PRESENT, UPLOADED, BlobTransfer, RegistrySource
from ..util import atomic_write

log = logging.getLogger(__name__)


class _SourceVanished(Exception):
    """A blob or manifest the plan named is gone from the source: the item is recorded as
    vanished (not failed) and the others go on."""


class _BlobFailed(Exception):
    """A blob of the item could not be copied (after the transport's retries and the
    transfer's restarts); the message names the blob and why."""


def hints_file(cache_root: str | os.PathLike | None, target: RegistryClient) -> Path | None:
    """Where mount hints for a target live (inside the digest cache directory)."""
    if not cache_root:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{target.name}-{target.host}")
    return Path(cache_root) / "replicate" / f"{safe}.blobs.json"


class BlobCopy:
    """The blob half of ``Replicator`` (a mixin): which target repositories hold which blob,
    mount hints across runs, and ``ensure_blob`` (through the one ``BlobTransfer``).

    Relies on what ``Replicator.__init__`` sets: ``src``, ``dst``, ``_glock`` and ``_lock()``;
    ``_init_blob_state`` sets the rest."""

    src: RegistryClient
    dst: RegistryClient
    _glock: threading.Lock

    def _lock(self, key: tuple) -> threading.Lock:
        raise NotImplementedError("Replicator's per-key lock")

    def _init_blob_state(self, transfer: BlobTransfer, hints_path: str | os.PathLike | None) -> None:
        self.transfer = transfer
        self._where: dict[str, list[str]] = {}  # blob digest -> target repos holding it
        # (target repo, digest) -> why it failed; target repo "" when the source failed to serve it
        self._failed: dict[tuple[str, str], str] = {}
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
        """The blob is in ``dst_repo`` afterwards, or this raises ``_SourceVanished`` (gone from
        the source) or ``_BlobFailed`` (naming the blob). One digest at a time per Replicator."""
        digest = desc.digest
        if self._known_in(digest, dst_repo):
            return
        with self._lock(("blob", digest)):
            if self._known_in(digest, dst_repo):
                return
            with self._glock:
                earlier = self._failed.get((dst_repo, digest)) or self._failed.get(("", digest))
            if earlier is not None:
                raise _BlobFailed(f"blob {digest}: {earlier} (failed earlier in this run; not tried again)")
            try:
                out = self.transfer.ensure(
                    dst_repo,
                    digest,
                    desc.size,
                    [RegistrySource(self.src, src_repo)],
                    mount_from=self._mount_sources(digest, dst_repo),
                    check_present=dst_repo not in self._fresh,
                )
            except SourceBlobMissing:
                raise _SourceVanished(f"blob {digest} is gone from the source") from None
            except Exception as e:  # noqa: BLE001 - recorded once, named in every item needing it
                reason = str(e) or type(e).__name__
                # the source failing to serve it fails it for every target repository
                from_source = self.src is not self.dst and getattr(e, "registry", None) == self.src.name
                with self._glock:
                    self._failed[("" if from_source else dst_repo, digest)] = reason
                raise _BlobFailed(f"blob {digest}: {reason}") from e
            self._remember(digest, dst_repo)
            self._count(out, desc.size, acc)

    @staticmethod
    def _count(out, size: int, acc: Counter) -> None:
        if out.action == PRESENT:
            acc["blobs_present"] += 1
        elif out.action == MOUNTED:
            acc["blobs_mounted"] += 1
            acc["bytes_mounted"] += size
        elif out.action == UPLOADED:
            acc["blobs_uploaded"] += 1
            acc["bytes_uploaded"] += size
        acc["retries"] += out.restarts
