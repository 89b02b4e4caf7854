"""What a restore reads from a snapshot: a manifest's record, its closure (children first), its
blobs (foreign layers skipped), the repositories holding a blob, and manifest bytes from the
backup target (digest-checked, memoized, with the reason when unavailable)."""

from ..cache import verify_digest
from ..oci.mediatypes import FOREIGN_LAYER_TYPES
from .snapshot import Snapshot, object_key
from .store import ObjectMissing, ObjectStore


class SnapshotReader:
    """A snapshot and the target it was written to, read for one restore batch."""

    def __init__(self, snap: Snapshot, store: ObjectStore):
        self.snap = snap
        self.store = store
        self._raw: dict[str, bytes | None] = {}
        self._raw_why: dict[str, str] = {}
        self._holders: dict[str, list[str]] | None = None

    def man(self, digest: str) -> dict | None:
        return self.snap.manifests.get(digest)

    def closure(self, digest: str) -> list[str]:
        """The digest and every manifest below it, children first."""
        out: list[str] = []
        seen: set[str] = set()

        def walk(d, depth=0):
            if d in seen or depth > 8:
                return
            seen.add(d)
            m = self.man(d)
            for ch in (m or {}).get("children", []):
                walk(ch, depth + 1)
            out.append(d)

        walk(digest)
        return out

    def blobs_of(self, digest: str) -> list[dict]:
        m = self.man(digest) or {}
        out = []
        if m.get("config"):
            out.append(dict(m["config"], role="config"))
        for layer in m.get("layers", []):
            if layer.get("media_type") in FOREIGN_LAYER_TYPES:
                continue  # not stored by the registry (URLs); not verified on PUT
            out.append(dict(layer, role="layer"))
        return out

    def holders(self, blob: str) -> list[str]:
        """Repositories of the snapshot whose manifests reference the blob."""
        if self._holders is None:
            h: dict[str, set[str]] = {}
            for repo, rec in self.snap.repositories.items():
                for d in rec.get("manifests") or []:
                    for b in self.blobs_of(d):
                        h.setdefault(b["digest"], set()).add(repo)
            self._holders = {k: sorted(v) for k, v in h.items()}
        return self._holders.get(blob, [])

    def raw(self, digest: str) -> bytes | None:
        """Manifest bytes from the target, digest-checked (memoized)."""
        if digest not in self._raw:
            data: bytes | None = None
            try:
                got = self.store.get(object_key("manifests", digest))
                if verify_digest(digest, got):
                    data = got
                else:
                    self._raw_why[digest] = f"manifest {digest} on the backup target is corrupted"
            except ObjectMissing:
                self._raw_why[digest] = f"manifest {digest} is not on the backup target"
            self._raw[digest] = data
        return self._raw[digest]
