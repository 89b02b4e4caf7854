"""Snapshot layout on the target, and reading snapshots back.

Keys (content-addressed objects, indexes) and snapshot ids; ``seal``/``unseal`` of an index
(a sha256 checksum of its canonical body). Only a complete, checksummed index is a snapshot:
``scan_snapshots`` reads every index and says why one is ignored, ``list_snapshots`` and
``load_snapshot`` return verified snapshots only, so a half-written backup is never taken for a
complete one. ``list_existing`` is the one LIST of content-addressed objects per run.
"""

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ..util import bounded_map, succeeded, utcnow
from .store import BackupError, ObjectMissing, ObjectStore

FORMAT = "regkeeper-backup/2"  # /2: repositories[].referrers (see referrers.py)
FORMATS = ("regkeeper-backup/1", FORMAT)  # what restore reads: /1 has no referrers field

_SNAP_KEY_RE = re.compile(r"^snapshots/([^/]+)/([^/]+)\.json$")
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


def object_key(kind: str, digest: str) -> str:
    """``manifests/sha256/<hex>`` or ``blobs/sha256/<hex>``."""
    algo, _, hexpart = digest.partition(":")
    if not hexpart or not hexpart.isalnum() or not algo.isalnum():
        raise BackupError(f"not a digest: {digest!r}")
    return f"{kind}/{algo}/{hexpart}"


def key_digest(key: str) -> str:
    _, algo, hexpart = key.split("/", 2)
    return f"{algo}:{hexpart}"


def snapshot_key(registry: str, snap_id: str) -> str:
    return f"snapshots/{registry}/{snap_id}.json"


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sortable UTC timestamp (milliseconds) + 6 random hex: ``20250102T020000.123Z-1a2b3c``."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal(body: dict) -> bytes:
    """Serialize an index with ``checksum`` = sha256 of its canonical body (without checksum)."""
    body = {k: v for k, v in body.items() if k != "checksum"}
    body["checksum"] = "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()
    return json.dumps(body, sort_keys=True, indent=1).encode()


def unseal(raw: bytes) -> tuple[dict | None, str | None]:
    """(body, None) for a complete index whose checksum holds, else (None, reason)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None, "not valid JSON (torn or corrupted write)"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    checksum = doc.get("checksum")
    if not checksum:
        return None, "no checksum"
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if "sha256:" + hashlib.sha256(_canonical(body)).hexdigest() != checksum:
        return None, "checksum mismatch"
    if doc.get("format") not in FORMATS:
        return None, f"unknown format {doc.get('format')!r}"
    if doc.get("complete") is not True:
        return None, "not marked complete"
    return doc, None


@dataclass
class Snapshot:
    """A verified snapshot index."""

    id: str
    registry: str
    data: dict
    key: str

    @property
    def created(self) -> str:
        return self.data.get("finished") or self.data.get("started") or ""

    @property
    def counts(self) -> dict:
        return self.data.get("counts") or {}

    @property
    def repositories(self) -> dict[str, dict]:
        return self.data.get("repositories") or {}

    @property
    def manifests(self) -> dict[str, dict]:
        return self.data.get("manifests") or {}

    @property
    def objects(self) -> list[str]:
        return self.data.get("objects") or []

    def tags(self, repo: str) -> dict[str, str]:
        return (self.repositories.get(repo) or {}).get("tags") or {}

    def referrers(self, repo: str) -> dict[str, list[dict]]:
        """subject -> its referrers (``backup/referrers.py``); empty in a /1 snapshot."""
        return (self.repositories.get(repo) or {}).get("referrers") or {}


@dataclass
class SnapshotEntry:
    """One index found on the target: valid or not (and why)."""

    registry: str
    id: str
    key: str
    snapshot: Snapshot | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.snapshot is not None


def scan_snapshots(store: ObjectStore, registry: str | None = None) -> list[SnapshotEntry]:
    """Every index under ``snapshots/`` (of one registry or all), each read and verified.
    Sorted by registry, then id (oldest first). A read error raises: an index that cannot be
    read is not known to be invalid."""
    prefix = f"snapshots/{registry}/" if registry else "snapshots/"
    keys = sorted(store.list(prefix))
    found = []
    for key in keys:
        m = _SNAP_KEY_RE.match(key)
        if not m:
            continue
        found.append((m.group(1), m.group(2), key))

    def read(item: tuple[str, str, str]) -> SnapshotEntry:
        reg, sid, key = item
        try:
            raw = store.get(key)
        except ObjectMissing:
            return SnapshotEntry(reg, sid, key, None, "deleted while listing")
        doc, why = unseal(raw)
        if doc is None:
            return SnapshotEntry(reg, sid, key, None, why)
        if doc.get("id") != sid or doc.get("registry") != reg:
            return SnapshotEntry(reg, sid, key, None, "id/registry do not match its key")
        return SnapshotEntry(reg, sid, key, Snapshot(sid, reg, doc, key))

    out = [entry for _item, entry in succeeded(bounded_map(read, found, 8))]
    out.sort(key=lambda e: (e.registry, e.id))
    return out


def list_snapshots(store: ObjectStore, registry: str | None = None) -> list[Snapshot]:
    """Complete, checksummed snapshots only (oldest first). Anything else is ignored."""
    return [e.snapshot for e in scan_snapshots(store, registry) if e.snapshot is not None]  # the valid ones


def load_snapshot(store: ObjectStore, registry: str, snapshot: str = "latest") -> Snapshot:
    """``latest`` or an id. Raises BackupError naming what is missing or invalid."""
    if snapshot in (None, "", "latest"):
        snaps = list_snapshots(store, registry)
        if not snaps:
            raise BackupError(f"no complete snapshot of registry {registry!r} at {store.url}")
        return snaps[-1]
    key = snapshot_key(registry, snapshot)
    try:
        raw = store.get(key)
    except ObjectMissing:
        known = [s.id for s in list_snapshots(store, registry)]
        hint = f" (latest: {known[-1]})" if known else " (there are none)"
        raise BackupError(
            f"snapshot {snapshot!r} of registry {registry!r} not found at {store.url}{hint}"
        ) from None
    doc, why = unseal(raw)
    if doc is None:
        raise BackupError(
            f"snapshot {snapshot!r} of registry {registry!r} at {store.url} is not usable: {why}"
        )
    return Snapshot(snapshot, registry, doc, key)


def list_existing(store: ObjectStore) -> dict[str, int]:
    """Every content-addressed object on the target (key -> size): one LIST per prefix."""
    return {**store.list("manifests/"), **store.list("blobs/")}
