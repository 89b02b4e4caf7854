"""The restore side of the blob copy: make a blob available in a repository.

HEAD, cross-repository mount (the registry may answer 202 with an upload session instead),
upload of a config from the snapshot, copy of a layer from the ``blobSource`` registry (in
chunks above ``STREAM_THRESHOLD``), and cancelling an upload session left unused. These are
kept together, apart from the restore phases, because a later phase replaces them with the one
shared blob transfer (HEAD -> mount -> upload) that replicate uses too.
"""

import logging
from collections.abc import Callable

from ..cache import verify_digest
from ..errors import RegistryError
from ..oci import RegistryClient
from ..util import human_bytes
from .snapshot import object_key
from .store import ObjectMissing, ObjectStore

log = logging.getLogger(__name__)

STREAM_THRESHOLD = 8 * 1024 * 1024          # blobs above this are copied in chunks


class BlobSupply:
    """Supplies missing blobs to the repositories of one restore batch.

    ``holders(digest)``: repositories of the snapshot whose manifests reference the blob;
    ``bump(counter, n)``: the batch's thread-safe counters."""

    def __init__(self, client: RegistryClient, store: ObjectStore,
                 blob_source: RegistryClient | None, holders: Callable[[str], list[str]],
                 bump: Callable[[str, int], None]):
        self.c = client
        self.store = store
        self.src = blob_source
        self.holders = holders
        self.bump = bump

    def provide_blob(self, repo: str, digest: str, desc: dict, *, dry: bool,
                     known_in: list[str] = ()) -> bool | str:
        """Make blob ``digest`` available in ``repo``: mount it from another repository of this
        registry, upload a config from the snapshot, or copy it from the blob source. Returns
        True when available (dry run: when it would be), else the reason it is not.
        ``known_in``: repositories of this registry that hold the blob already."""
        c = self.c
        role = desc["role"]
        location = None
        # a) another repository of this registry holds it: cross-repository mount
        candidates = list(known_in) + [h for h in self.holders(digest)
                                       if h != repo and h not in known_in]
        for other in candidates[:4]:
            if other not in known_in and c.head_blob(other, digest) is None:
                continue
            if dry:
                return True
            try:
                location = c.mount_blob(repo, digest, other)
            except RegistryError as e:
                log.info("mount %s into %s from %s failed: %s", digest, repo, other, e)
                continue
            if location is None:
                self.bump("blobs_mounted", 1)
                return True
            break   # the registry opened an upload instead: use it below
        try:
            # b) a config: the snapshot has its bytes
            if role == "config":
                key = object_key("blobs", digest)
                if dry:
                    if self.store.exists(key):
                        return True
                else:
                    try:
                        data = self.store.get(key)
                    except ObjectMissing:
                        data = None
                    if data is not None and verify_digest(digest, data):
                        c.upload_blob(repo, digest, data, len(data), location=location)
                        location = None
                        self.bump("configs_uploaded", 1)
                        self.bump("bytes_copied", len(data))
                        return True
            # c) the blob source registry
            if self.src is not None:
                for src_repo in [repo] + [h for h in self.holders(digest) if h != repo]:
                    size = self.src.head_blob(src_repo, digest)
                    if size is None:
                        continue
                    if dry:
                        return True
                    self._copy_from_source(repo, src_repo, digest, size, location)
                    location = None
                    self.bump("blobs_copied", 1)
                    self.bump("bytes_copied", size)
                    return True
                where = f" nor in blobSource {self.src.name!r}"
            else:
                where = " and no blobSource is configured"
            return (f"{role} blob {digest} ({human_bytes(desc.get('size'))}) is missing from the "
                    f"registry{where}")
        finally:
            if location is not None:
                _cancel_upload(c, repo, location)

    def _copy_from_source(self, repo, src_repo, digest, size, location):
        src = self.src
        if size <= STREAM_THRESHOLD:
            data = src.get_blob(src_repo, digest, max_bytes=STREAM_THRESHOLD + 1)
            self.c.upload_blob(repo, digest, data, len(data), location=location)
            return

        def chunks():
            with src.stream_blob(src_repo, digest) as (it, _):
                yield from it
        self.c.upload_blob(repo, digest, chunks, size, location=location)


def _cancel_upload(client: RegistryClient, repo: str, location: str) -> None:
    try:
        client.request("DELETE", location, repo=repo, ok=(204, 200, 202), allow_404=True)
    except Exception as e:  # noqa: BLE001 - the registry purges stale uploads itself
        log.debug("cancel upload %s: %s", repo, e)
