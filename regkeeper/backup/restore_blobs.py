"""The restore side of the blob supply: where a missing blob can come from, handed to the ONE
blob transfer (``regkeeper/oci/transfer.py``) that does the HEADs, the mount (and its 202
quirk), the upload, the cancel and the restarts.

Candidates, in order: repositories of this registry known to hold the blob (supplied earlier in
this batch: mounted without asking), repositories whose snapshot manifests reference it (HEADed
first); then sources: a config's bytes from the snapshot, then the ``blobSource`` registry (the
same repository first, then the snapshot's holders). A dry run asks the same questions with
HEADs only.
"""

import logging
from collections.abc import Callable, Sequence

from ..oci import RegistryClient
from ..oci.transfer import MOUNTED, BlobTransfer, BytesSource, RegistrySource
from ..util import human_bytes
from .snapshot import object_key
from .store import ObjectMissing, ObjectStore

log = logging.getLogger(__name__)

MOUNT_CANDIDATES = 4  # repositories tried as a mount source per blob


class BlobSupply:
    """Supplies missing blobs to the repositories of one restore batch.

    ``holders(digest)``: repositories of the snapshot whose manifests reference the blob;
    ``bump(counter, n)``: the batch's thread-safe counters."""

    def __init__(
        self,
        client: RegistryClient,
        store: ObjectStore,
        blob_source: RegistryClient | None,
        holders: Callable[[str], list[str]],
        bump: Callable[[str, int], None],
    ):
        self.c = client
        self.store = store
        self.src = blob_source
        self.holders = holders
        self.bump = bump
        self.transfer = BlobTransfer(client)

    def _snapshot_bytes(self, digest: str) -> BytesSource:
        key = object_key("blobs", digest)

        def load() -> bytes | None:
            try:
                return self.store.get(key)
            except ObjectMissing:
                return None

        return BytesSource(load=load, probe=lambda: self.store.exists(key), label="the snapshot's copy")

    def provide_blob(
        self, repo: str, digest: str, desc: dict, *, dry: bool, known_in: Sequence[str] = ()
    ) -> bool | str:
        """Make blob ``digest`` available in ``repo``: mount it from another repository of this
        registry, upload a config from the snapshot, or copy it from the blob source. Returns
        True when available (dry run: when it would be), else the reason it is not.
        ``known_in``: repositories of this registry that hold the blob already."""
        role = desc["role"]
        holders = [h for h in self.holders(digest) if h != repo]
        known = [r for r in known_in if r != repo][:MOUNT_CANDIDATES]
        maybe = [h for h in holders if h not in known][: max(0, MOUNT_CANDIDATES - len(known))]
        config_src = self._snapshot_bytes(digest) if role == "config" else None
        sources: list[BytesSource | RegistrySource] = [s for s in (config_src,) if s is not None]
        if self.src is not None:
            sources.append(RegistrySource(self.src, [repo] + holders, check=True))
        size = desc.get("size")
        out = self.transfer.ensure(
            repo,
            digest,
            size if isinstance(size, int) else -1,
            sources,
            mount_from=known,
            mount_if_present=maybe,
            check_present=False,
            dry_run=dry,
        )
        if not out.available:
            where = (
                f" nor in blobSource {self.src.name!r}"
                if self.src is not None
                else " and no blobSource is configured"
            )
            return (
                f"{role} blob {digest} ({human_bytes(desc.get('size'))}) is missing from the registry{where}"
            )
        if not dry:
            self._count(out, config_src)
        return True

    def _count(self, out, config_src) -> None:
        if out.action == MOUNTED:
            self.bump("blobs_mounted", 1)
        elif out.source is config_src:
            self.bump("configs_uploaded", 1)
            self.bump("bytes_copied", max(0, out.size))
        else:
            self.bump("blobs_copied", 1)
            self.bump("bytes_copied", max(0, out.size))
