"""Registry metadata backup and verified restore.

What a snapshot holds, per registry: every repository, tag -> digest, the raw bytes of every
manifest and index (children included), the image config blobs (small; they carry ``created``),
and the descriptors (digest, size, media type) of every referenced layer. Never layer data.

Layout on the target (an :class:`ObjectStore`: a directory or an S3 bucket/prefix)::

    manifests/<algo>/<hex>          raw manifest bytes, content-addressed, written once
    blobs/<algo>/<hex>              image config blobs, content-addressed, written once
    snapshots/<registry>/<id>.json  one index per run, written LAST
    inflight/<registry>/<id>.json   marker while a backup runs (pruning leaves objects alone)

A snapshot index carries ``complete: true``, counts, the list of objects it uses and a sha256
checksum of its canonical body; anything that is not a complete, checksummed index is never
listed nor restored, so a backup that dies before its index leaves no snapshot behind. Object
existence is learnt with one paginated LIST per prefix per run, not a HEAD per object, so a
second backup uploads only what is new. Pruning keeps the last N snapshots of a registry and
deletes the objects that no remaining snapshot (of any registry) uses.

Restore diffs a snapshot against the registry (missing tags, moved tags, missing manifests,
missing blobs), re-creates manifests children first (blobs mounted from another repository,
configs uploaded from the snapshot, layers copied from a ``blobSource`` registry), puts the
tags back with the exact bytes, verifies every restored tag resolves to the snapshot's digest,
and says what it could not restore and why.
"""

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from ..cache import verify_digest
from ..errors import NotFoundError, RegistryError, RegkeeperError
from ..globs import select
from ..inventory import scan
from ..oci import RegistryClient
from ..util import atomic_write, bounded_map, human_bytes, scrub, utcnow

log = logging.getLogger(__name__)

FORMAT = "regkeeper-backup/1"
CONFIG_MAX_BYTES = 8 * 1024 * 1024          # configs larger than this are described, not copied
STREAM_THRESHOLD = 8 * 1024 * 1024          # blobs above this are copied in chunks
INFLIGHT_STALE = timedelta(hours=6)         # an in-flight marker older than this is ignored
FOREIGN_LAYER_TYPES = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                       "application/vnd.oci.image.layer.nondistributable.v1.tar",
                       "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                       "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")

_SNAP_KEY_RE = re.compile(r"^snapshots/([^/]+)/([^/]+)\.json$")
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


class BackupError(RegkeeperError):
    """A backup target problem or an unusable snapshot. Names the target, key or snapshot."""


class ObjectMissing(BackupError):
    """The key does not exist on the target."""


# =========================================================================== object stores


class ObjectStore(Protocol):
    """Where snapshots live. Keys are relative, ``/``-separated (``manifests/sha256/<hex>``)."""

    url: str
    stats: Counter

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> dict[str, int]:
        """key -> size for every key starting with ``prefix``."""
        ...

    def delete(self, keys: Iterable[str]) -> int: ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise BackupError(f"invalid object key {key!r}")
    return key


class _Counting:
    def _init_stats(self):
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()

    def _count(self, what: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[what] += n


class FileStore(_Counting):
    """A directory. Writes are atomic and durable: temp file, fsync, ``os.replace``, fsync of
    the directory. Temp files (``.tmp-*``) are never listed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.url = f"file://{self.root}"
        self._init_stats()

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def exists(self, key: str) -> bool:
        self._count("HEAD")
        return self._path(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        p = self._path(key)
        try:
            atomic_write(p, data, fsync=True)
        except OSError as e:
            raise BackupError(f"{self.url}: cannot write {key}: {e.strerror or e}") from None
        try:
            dfd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
        self._count("PUT")
        self._count("bytes_written", len(data))

    def get(self, key: str) -> bytes:
        self._count("GET")
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(f"{self.url}: {key} does not exist") from None
        except OSError as e:
            raise BackupError(f"{self.url}: cannot read {key}: {e.strerror or e}") from None

    def list(self, prefix: str) -> dict[str, int]:
        self._count("LIST")
        out: dict[str, int] = {}
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    try:
                        out[key] = os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:
                        continue
        return out

    def delete(self, keys: Iterable[str]) -> int:
        n = 0
        for key in keys:
            try:
                self._path(key).unlink()
                n += 1
            except FileNotFoundError:
                continue
            except OSError as e:
                raise BackupError(f"{self.url}: cannot delete {key}: {e.strerror or e}") from None
        self._count("DELETE", n)
        return n


class S3Store(_Counting):
    """An S3 bucket and prefix through boto3 (MinIO and other S3-compatible stores work).
    Every PUT carries a SHA-256 checksum the server verifies."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._init_stats()

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, op: str, key: str, e: Exception) -> BackupError:
        from botocore.exceptions import ClientError
        if isinstance(e, ClientError):
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return BackupError(f"backup.target {self.url}: bucket {self.bucket!r} does not exist")
            if code in ("NoSuchKey", "404") or (status == 404 and op in ("GET", "HEAD")):
                return ObjectMissing(f"{self.url}: {key} does not exist")
            return BackupError(f"{self.url}: {op} {key} failed: {code or 'error'} (HTTP {status})")
        return BackupError(f"{self.url}: {op} {key} failed: {scrub(type(e).__name__ + ': ' + str(e))[:300]}")

    def exists(self, key: str) -> bool:
        self._count("HEAD")
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as e:  # noqa: BLE001 - mapped below
            err = self._error("HEAD", key, e)
            if isinstance(err, ObjectMissing):
                return False
            raise err from None

    def put(self, key: str, data: bytes) -> None:
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ChecksumSHA256=checksum,
                                   ContentType="application/json" if key.endswith(".json")
                                   else "application/octet-stream")
        except Exception as e:  # noqa: BLE001
            raise self._error("PUT", key, e) from None
        self._count("PUT")
        self._count("bytes_written", len(data))

    def get(self, key: str) -> bytes:
        self._count("GET")
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return resp["Body"].read()
        except Exception as e:  # noqa: BLE001
            raise self._error("GET", key, e) from None

    def list(self, prefix: str) -> dict[str, int]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: dict[str, int] = {}
        try:
            pag = self.client.get_paginator("list_objects_v2")
            for page in pag.paginate(Bucket=self.bucket, Prefix=full):
                self._count("LIST")
                for obj in page.get("Contents", []) or []:
                    out[obj["Key"][strip:]] = int(obj.get("Size", 0))
        except Exception as e:  # noqa: BLE001
            raise self._error("LIST", prefix, e) from None
        return out

    def delete(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        n = 0
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True})
            except Exception as e:  # noqa: BLE001
                raise self._error("DELETE", f"{len(chunk)} keys", e) from None
            errs = resp.get("Errors") or []
            if errs:
                first = errs[0]
                raise BackupError(f"{self.url}: DELETE failed for {len(errs)} key(s), e.g. "
                                  f"{first.get('Key')}: {first.get('Code')}")
            n += len(chunk)
        self._count("DELETE", n)
        return n


def open_target(url: str, backup_cfg=None) -> ObjectStore:
    """``file:///abs/path``, ``file://./relative`` or ``s3://bucket/prefix`` -> an ObjectStore.
    For S3, endpoint, credentials and region come from the ``backup`` config section."""
    if url.startswith("file://"):
        rest = url[len("file://"):]
        if not rest:
            raise BackupError(f"backup.target {url!r}: no path after file://")
        return FileStore(os.path.expanduser(rest))
    if url.startswith("s3://"):
        rest = url[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise BackupError(f"backup.target {url!r}: no bucket after s3://")
        from ..storage import s3_client
        endpoint = getattr(backup_cfg, "endpoint", None)
        client = s3_client(endpoint,
                           getattr(backup_cfg, "access_key", None),
                           getattr(backup_cfg, "secret_key", None),
                           getattr(backup_cfg, "region", None) or "us-east-1")
        return S3Store(client, bucket, prefix)
    raise BackupError(f"backup.target must be s3://bucket/prefix or file:///path, got {url!r}")


# =========================================================================== keys, ids, indexes


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
    if doc.get("format") != FORMAT:
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

    def read(item):
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

    out = []
    for _item, entry, err in bounded_map(read, found, 8):
        if err is not None:
            raise err
        out.append(entry)
    out.sort(key=lambda e: (e.registry, e.id))
    return out


def list_snapshots(store: ObjectStore, registry: str | None = None) -> list[Snapshot]:
    """Complete, checksummed snapshots only (oldest first). Anything else is ignored."""
    return [e.snapshot for e in scan_snapshots(store, registry) if e.valid]


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
        raise BackupError(f"snapshot {snapshot!r} of registry {registry!r} not found at "
                          f"{store.url}{hint}") from None
    doc, why = unseal(raw)
    if doc is None:
        raise BackupError(f"snapshot {snapshot!r} of registry {registry!r} at {store.url} is not "
                          f"usable: {why}")
    return Snapshot(snapshot, registry, doc, key)


# =========================================================================== backup


@dataclass
class BackupRun:
    """State shared by the batches of one backup run."""

    id: str
    registry: str
    registry_url: str
    started: str
    existing: dict[str, int]            # key -> size on the target when the run started
    include: list[str] | None = None
    exclude: list[str] | None = None


@dataclass
class BatchResult:
    repositories: dict[str, dict] = field(default_factory=dict)   # repo -> {tags, manifests, errors}
    manifests: dict[str, dict] = field(default_factory=dict)      # digest -> description
    written: dict[str, int] = field(default_factory=dict)         # key -> bytes uploaded by us
    would_write: list[str] = field(default_factory=list)          # dry run: keys to upload
    errors: list[str] = field(default_factory=list)
    requests: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class BackupResult:
    snapshot: Snapshot
    objects_written: int
    bytes_written: int
    objects_total: int
    seconds: float
    errors: list[str]
    requests: dict
    store_stats: dict
    pruned: "PruneResult | None" = None

    def rows(self) -> list[dict]:
        return repository_rows(self.snapshot)

    def summary(self) -> dict:
        c = self.snapshot.counts
        return {
            "snapshot": self.snapshot.id,
            "repositories": c.get("repositories", 0),
            "tags": c.get("tags", 0),
            "manifests": c.get("manifests", 0),
            "configs": c.get("configs", 0),
            "layer descriptors": c.get("layers", 0),
            "layer bytes (described, not copied)": c.get("layer_bytes", 0),
            "objects written": self.objects_written,
            "bytes written": self.bytes_written,
            "objects already on target": self.objects_total - self.objects_written,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 2),
        }


def plan_backup(client: RegistryClient, include: Iterable[str] | None = None,
                exclude: Iterable[str] | None = None) -> list[str]:
    """The repositories a backup covers, sorted."""
    inc = list(include) if include else None
    exc = list(exclude) if exclude else None
    return sorted(r for r in client.catalog() if select(r, inc, exc))


def inflight_key(registry: str, run_id: str) -> str:
    return f"inflight/{registry}/{run_id}.json"


def begin_backup(store: ObjectStore, client: RegistryClient, *, registry: str | None = None,
                 include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                 snapshot_id: str | None = None) -> BackupRun:
    """Mark the run in flight (so a concurrent prune keeps our fresh objects) and learn which
    objects the target already holds: one paginated LIST per prefix."""
    reg = registry or client.name
    now = utcnow()
    run = BackupRun(id=snapshot_id or new_snapshot_id(now), registry=reg, registry_url=client.url,
                    started=now.isoformat(), existing={},
                    include=list(include) if include else None,
                    exclude=list(exclude) if exclude else None)
    store.put(inflight_key(reg, run.id), json.dumps({"id": run.id, "registry": reg,
                                                     "started": run.started}).encode())
    run.existing = list_existing(store)
    return run


def list_existing(store: ObjectStore) -> dict[str, int]:
    """Every content-addressed object on the target (key -> size): one LIST per prefix."""
    return {**store.list("manifests/"), **store.list("blobs/")}


def abort_backup(store: ObjectStore, run: BackupRun) -> None:
    """Best effort: drop the in-flight marker of a failed run (objects stay for the next run)."""
    try:
        store.delete([inflight_key(run.registry, run.id)])
    except Exception as e:  # noqa: BLE001
        log.warning("backup %s: cannot remove in-flight marker: %s", run.id, e)


def _describe(info) -> dict:
    """Snapshot description of one manifest (from an inventory ManifestInfo)."""
    config = None
    layers = []
    for b in info.blobs:
        d = {"digest": b.digest, "size": b.size, "media_type": b.media_type}
        if config is None and info.config_digest and b.digest == info.config_digest:
            config = d
        else:
            layers.append(d)
    return {
        "media_type": info.media_type,
        "size": info.size,
        "kind": info.kind,
        "children": [c.digest for c in info.children],
        "config": config,
        "layers": layers,
        "subject": info.subject,
    }


def backup_batch(client: RegistryClient, store: ObjectStore, repositories: list[str], *,
                 existing: dict[str, int] | None = None, concurrency: int = 8,
                 dry_run: bool = False) -> BatchResult:
    """Scan these repositories and upload the manifests and configs the target lacks.

    ``existing`` is the run's LIST of the target (``begin_backup``); it is updated in place
    with what this batch wrote, so later batches of the same process skip it too. A tag that
    disappears mid-run (404) is left out and noted; any other failure raises, and no index is
    written for the run. ``dry_run``: scan and compare only; ``would_write`` lists the keys."""
    t0 = time.perf_counter()
    before = Counter(client.stats)
    if existing is None:
        existing = list_existing(store)
    res = BatchResult()
    inv = scan(client, repositories=list(repositories), created="never",
               concurrency=client.concurrency)

    # what each repository holds: tags, and every manifest reachable from them
    need_manifest: dict[str, tuple[str, int]] = {}     # digest -> (repo to fetch from, size)
    need_config: dict[str, tuple[str, int]] = {}
    for name in sorted(inv.repositories):
        r = inv.repositories[name]
        rec = {"tags": dict(sorted(r.tags.items())), "manifests": [], "errors": list(r.errors)}
        res.errors += [f"{name}: {e}" for e in r.errors]
        reachable: list[str] = []
        for info in r.closure(r.tags.values()):   # dangling children are noted in r.errors by the scan
            d = info.digest
            reachable.append(d)
            res.manifests.setdefault(d, _describe(info))
            need_manifest.setdefault(d, (name, info.size))
            cfg = res.manifests[d]["config"]
            if cfg:
                if cfg["size"] <= CONFIG_MAX_BYTES:
                    need_config.setdefault(cfg["digest"], (name, cfg["size"]))
                else:
                    res.errors.append(f"{name}: config {cfg['digest']} of {d} is "
                                      f"{human_bytes(cfg['size'])}: described, not copied")
        rec["manifests"] = sorted(reachable)
        res.repositories[name] = rec

    # upload what the target lacks (a size mismatch counts as lacking)
    todo = []
    for d, (repo, size) in sorted(need_manifest.items()):
        k = object_key("manifests", d)
        if existing.get(k) != size:
            todo.append(("manifests", d, repo))
    for d, (repo, size) in sorted(need_config.items()):
        k = object_key("blobs", d)
        if existing.get(k) != size:
            todo.append(("blobs", d, repo))

    def upload(item):
        kind, digest, repo = item
        if kind == "manifests":
            data = client.get_manifest(repo, digest).raw   # disk cache first; digest-checked
        else:
            data = client.get_blob(repo, digest, cache=True, max_bytes=CONFIG_MAX_BYTES)
        if not verify_digest(digest, data):
            raise BackupError(f"{kind[:-1]} {digest} from {repo}: content does not match its digest")
        key = object_key(kind, digest)
        store.put(key, data)
        return key, len(data)

    if dry_run:
        res.would_write = [object_key(kind, d) for kind, d, _repo in todo]
        todo = []
    failures = []
    gone: set[str] = set()
    for (kind, digest, repo), out, err in bounded_map(upload, todo, concurrency):
        if err is None:
            res.written[out[0]] = out[1]
            existing[out[0]] = out[1]
        elif isinstance(err, NotFoundError):
            gone.add(digest)
            res.errors.append(f"{repo}: {kind[:-1]} {digest} disappeared during the backup (404): "
                              "left out")
        else:
            failures.append(f"{kind[:-1]} {digest} ({repo}): {err}")
    if failures:
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise BackupError(f"backup of {client.name}: {len(failures)} object(s) could not be "
                          f"copied to {store.url}: " + "; ".join(failures[:3]) + more)
    if gone:
        _drop_gone(res, gone)
    after = client.stats
    res.requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _drop_gone(res: BatchResult, gone: set[str]) -> None:
    """Leave out manifests deleted mid-run, the indexes over them, and their tags."""
    changed = True
    while changed:
        changed = False
        for d, m in res.manifests.items():
            if d in gone:
                continue
            if any(c in gone for c in m["children"]) or (m["config"] and m["config"]["digest"] in gone):
                gone.add(d)
                changed = True
    for d in list(res.manifests):
        if d in gone:
            del res.manifests[d]
    for name, rec in res.repositories.items():
        for t, d in list(rec["tags"].items()):
            if d in gone:
                del rec["tags"][t]
        rec["manifests"] = [d for d in rec["manifests"] if d not in gone]


def commit_snapshot(store: ObjectStore, run: BackupRun, batches: list[BatchResult]) -> Snapshot:
    """Write the index LAST, after checking every object it names is on the target.
    Then drop the in-flight marker."""
    repos: dict[str, dict] = {}
    manifests: dict[str, dict] = {}
    written: dict[str, int] = {}
    errors: list[str] = []
    for b in batches:
        repos.update(b.repositories)
        manifests.update(b.manifests)
        written.update(b.written)
        errors += b.errors
    objects: set[str] = set()
    configs: set[str] = set()
    layers: dict[str, int] = {}
    for d, m in manifests.items():
        objects.add(object_key("manifests", d))
        if m["config"] and m["config"]["size"] <= CONFIG_MAX_BYTES:
            objects.add(object_key("blobs", m["config"]["digest"]))
            configs.add(m["config"]["digest"])
        for layer in m["layers"]:
            layers[layer["digest"]] = layer["size"]
    present = set(run.existing) | set(written)
    # objects this run did not upload because they existed at its start: a prune running
    # meanwhile may have swept them, so look again (one LIST) before naming them in an index
    reused = (objects - set(written)) & set(run.existing)
    if reused:
        present = (present - reused) | (reused & set(list_existing(store)))
    missing = sorted(objects - present)
    if missing:
        raise BackupError(f"backup {run.id} of {run.registry}: {len(missing)} object(s) the "
                          f"snapshot needs are not on {store.url} (e.g. {missing[0]}); no index written")
    finished = utcnow()
    body = {
        "format": FORMAT,
        "id": run.id,
        "registry": run.registry,
        "registry_url": run.registry_url,
        "started": run.started,
        "finished": finished.isoformat(),
        "complete": True,
        "selection": {"include": run.include, "exclude": run.exclude},
        "repositories": {k: repos[k] for k in sorted(repos)},
        "manifests": {k: manifests[k] for k in sorted(manifests)},
        "objects": sorted(objects),
        "counts": {
            "repositories": len(repos),
            "tags": sum(len(r["tags"]) for r in repos.values()),
            "manifests": len(manifests),
            "indexes": sum(1 for m in manifests.values() if m["kind"] == "index"),
            "configs": len(configs),
            "layers": len(layers),
            "layer_bytes": sum(layers.values()),
            "manifest_bytes": sum(m["size"] for m in manifests.values()),
            "objects": len(objects),
            "objects_written": len(written),
            "bytes_written": sum(written.values()),
        },
        "errors": errors,
    }
    key = snapshot_key(run.registry, run.id)
    raw = seal(body)
    store.put(key, raw)
    abort_backup(store, run)   # the marker is no longer needed
    return Snapshot(run.id, run.registry, json.loads(raw), key)


def backup(client: RegistryClient, store: ObjectStore, *, registry: str | None = None,
           include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
           batch_size: int = 25, concurrency: int = 8, keep: int | None = None,
           snapshot_id: str | None = None,
           progress: Callable[[str], None] | None = None) -> BackupResult:
    """One complete backup run of a registry (the flow runs the same steps as tasks)."""
    t0 = time.perf_counter()
    before = Counter(client.stats)
    store_before = Counter(store.stats)
    repos = plan_backup(client, include, exclude)
    run = begin_backup(store, client, registry=registry, include=include, exclude=exclude,
                       snapshot_id=snapshot_id)
    batches = []
    try:
        for i in range(0, len(repos), batch_size):
            chunk = repos[i:i + batch_size]
            batches.append(backup_batch(client, store, chunk, existing=run.existing,
                                        concurrency=concurrency))
            if progress:
                progress(f"{min(i + batch_size, len(repos))}/{len(repos)} repositories")
        snap = commit_snapshot(store, run, batches)
    except BaseException:
        abort_backup(store, run)
        raise
    pruned = prune(store, keep, registry=run.registry) if keep else None
    after = client.stats
    written = sum(len(b.written) for b in batches)
    return BackupResult(
        snapshot=snap, objects_written=written,
        bytes_written=sum(sum(b.written.values()) for b in batches),
        objects_total=len(snap.objects), seconds=time.perf_counter() - t0,
        errors=[e for b in batches for e in b.errors],
        requests={k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)},
        store_stats={k: store.stats.get(k, 0) - store_before.get(k, 0) for k in store.stats
                     if store.stats.get(k, 0) != store_before.get(k, 0)},
        pruned=pruned)


def repository_rows(snap_or_batches) -> list[dict]:
    """One row per repository (the backup report's main table), from a Snapshot or from the
    BatchResults of a run that wrote no index (dry run, failure)."""
    if isinstance(snap_or_batches, Snapshot):
        repos, mans = snap_or_batches.repositories, snap_or_batches.manifests
    else:
        repos, mans = {}, {}
        for b in snap_or_batches:
            repos.update(b.repositories)
            mans.update(b.manifests)
    rows = []
    for name, rec in sorted(repos.items()):
        ds = [d for d in rec.get("manifests") or [] if d in mans]
        layers = {layer["digest"]: layer["size"] for d in ds for layer in mans[d].get("layers", [])}
        rows.append({
            "repository": name,
            "tags": len(rec.get("tags") or {}),
            "manifests": len(ds),
            "indexes": sum(1 for d in ds if mans[d].get("kind") == "index"),
            "configs": len({mans[d]["config"]["digest"] for d in ds if mans[d].get("config")}),
            "layers": len(layers),
            "layer_bytes": sum(layers.values()),
            "errors": "; ".join(rec.get("errors") or []),
        })
    return rows


def backup_registries(cfg, registry: str | None = None) -> list[str]:
    """The registries a backup run covers: the one asked for, else ``backup.registries``, else
    every registry with an API URL."""
    if registry:
        return [cfg.registry(registry).name]
    if cfg.backup is not None and cfg.backup.registries:
        return list(cfg.backup.registries)
    return [r.name for r in cfg.mirror_repositories if r.url]


def require_backup_config(cfg):
    if cfg.backup is None:
        raise BackupError(f"{cfg.source or 'config'}: no backup section: set backup.target "
                          "(s3://bucket/prefix or file:///path)")
    return cfg.backup


def backup_report(registry: str, *, target: str, snapshot: Snapshot | None = None,
                  batches: Iterable[BatchResult] = (), pruned: "PruneResult | None" = None,
                  dry_run: bool = False, errors: Iterable[str] = (), started: datetime | None = None,
                  requests: dict | None = None):
    """The backup run's Report (main table: one row per repository)."""
    from ..report import Report
    batches = list(batches)
    rep = Report(flow="backup", registry=registry, title="Metadata backup")
    if started:
        rep.started = started
    written = {k: v for b in batches for k, v in b.written.items()}
    would = sorted({k for b in batches for k in b.would_write})
    rep.summary["target"] = target
    rep.summary["snapshot"] = snapshot.id if snapshot else ("(dry run: none written)" if dry_run
                                                            else "(none: run failed)")
    rows = repository_rows(snapshot if snapshot else batches)
    rep.summary["repositories"] = len(rows)
    rep.summary["tags"] = sum(r["tags"] for r in rows)
    if snapshot:
        c = snapshot.counts
        rep.summary["manifests"] = c.get("manifests", 0)
        rep.summary["configs"] = c.get("configs", 0)
        rep.summary["layer descriptors"] = c.get("layers", 0)
        rep.summary["layer bytes (described, not copied)"] = c.get("layer_bytes", 0)
        rep.summary["objects in snapshot"] = c.get("objects", 0)
    if dry_run:
        rep.summary["objects to write"] = len(would)
    else:
        rep.summary["objects written"] = len(written)
        rep.summary["bytes written"] = sum(written.values())
    if pruned is not None:
        rep.summary["snapshots kept"] = len(pruned.kept)
        rep.summary["snapshots pruned" + (" (dry run)" if pruned.dry_run else "")] = len(pruned.deleted_snapshots)
        rep.summary["objects pruned" + (" (dry run)" if pruned.dry_run else "")] = pruned.deleted_objects
        rep.summary["bytes pruned" + (" (dry run)" if pruned.dry_run else "")] = pruned.deleted_bytes
        if pruned.sweep_skipped:
            rep.note(f"prune: {pruned.sweep_skipped}")
        for key, why in pruned.invalid:
            rep.note(f"ignored on the target (not a complete snapshot): {key}: {why}")
    if requests:
        rep.summary["registry requests"] = ", ".join(f"{k} {v}" for k, v in sorted(requests.items()))
    rep.add_table("repositories", rows, ["repository", "tags", "manifests", "indexes", "configs",
                                         "layers", "layer_bytes", "errors"])
    problems = [e for b in batches for e in b.errors]
    if problems:
        rep.add_table("problems", [{"problem": p} for p in problems])
        rep.note(f"{len(problems)} item(s) left out of the snapshot: see the problems table")
    if pruned is not None and pruned.deleted_snapshots:
        rep.add_table("pruned snapshots", [{"snapshot": k} for k in pruned.deleted_snapshots])
    errs = list(errors)
    for e in errs:
        rep.note(e)
    if errs and snapshot is None and not dry_run:
        rep.note("no snapshot index was written: this run is not listed and cannot be restored; "
                 "objects it uploaded are reused by the next run")
    if errs:
        rep.finish("failed")
    else:
        rep.finish("dry-run" if dry_run else "ok")
    return rep


RESTORE_COLUMNS = ["repository", "tag", "digest", "action", "reason", "state", "current",
                   "missing_manifests", "missing_blobs"]


def restore_report(registry: str, *, target: str, result: "RestoreResult | None",
                   snapshot_registry: str | None = None, blob_source: str | None = None,
                   errors: Iterable[str] = (), started: datetime | None = None):
    """The restore run's Report (main table: one row per snapshot tag, with the action taken)."""
    from ..report import Report
    rep = Report(flow="restore", registry=registry, title="Restore from backup")
    if started:
        rep.started = started
    rep.summary["target"] = target
    if snapshot_registry and snapshot_registry != registry:
        rep.summary["snapshot of registry"] = snapshot_registry
    rep.summary["blobSource"] = blob_source or "(none)"
    if result is not None:
        rep.summary.update(result.summary())
        rep.add_table("tags", [r.to_dict() for r in result.rows], RESTORE_COLUMNS)
        bad = result.failed
        if bad:
            rep.note(f"{len(bad)} tag(s) {'cannot be' if result.dry_run else 'could not be'} "
                     f"restored, e.g. {bad[0].repository}:{bad[0].tag}: {bad[0].reason}")
    errs = list(errors)
    for e in errs:
        rep.note(e)
    if errs:
        rep.finish("failed")
    elif result is not None and result.dry_run:
        rep.finish("dry-run")
    elif result is not None and result.failed:
        rep.finish("failed")
    else:
        rep.finish("ok")
    return rep


# =========================================================================== prune


@dataclass
class PruneResult:
    kept: list[str] = field(default_factory=list)                # snapshot keys kept
    deleted_snapshots: list[str] = field(default_factory=list)   # snapshot keys deleted
    deleted_objects: int = 0
    deleted_bytes: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (key, reason): ignored
    sweep_skipped: str | None = None
    dry_run: bool = False

    def summary(self) -> dict:
        return {"snapshots kept": len(self.kept), "snapshots pruned": len(self.deleted_snapshots),
                "objects pruned": self.deleted_objects, "bytes pruned": self.deleted_bytes}


def _live_markers(store: ObjectStore, now: datetime,
                  stale_after: timedelta) -> tuple[list[str], list[str]]:
    """(live, stale) in-flight markers. An unreadable marker counts as live (fail safe; the
    prune result names it so it can be removed by hand)."""
    live, stale = [], []
    for key in store.list("inflight/"):
        try:
            t = datetime.fromisoformat(json.loads(store.get(key)).get("started"))
        except ObjectMissing:
            continue
        except (ValueError, TypeError, AttributeError):
            live.append(key)
            continue
        (live if now - t < stale_after else stale).append(key)
    return live, stale


def prune(store: ObjectStore, keep: int, *, registry: str | None = None, dry_run: bool = False,
          now: datetime | None = None, stale_after: timedelta = INFLIGHT_STALE) -> PruneResult:
    """Keep the last ``keep`` snapshots of ``registry`` (of every registry when None), then
    delete the objects no remaining snapshot of any registry uses. While another backup is in
    flight (a fresh marker), snapshots are pruned but objects are left for a later run."""
    if keep is None or keep < 1:
        raise BackupError(f"backup.keep must be at least 1, got {keep!r}")
    now = now or utcnow()
    res = PruneResult(dry_run=dry_run)
    entries = scan_snapshots(store)
    by_reg: dict[str, list[SnapshotEntry]] = {}
    for e in entries:
        if e.valid:
            by_reg.setdefault(e.registry, []).append(e)
        else:
            res.invalid.append((e.key, e.reason or "invalid"))
    drop: set[str] = set()
    for reg, es in by_reg.items():
        if registry is not None and reg != registry:
            continue
        es.sort(key=lambda e: e.id)
        for e in es[:-keep] if len(es) > keep else []:
            drop.add(e.key)
    used: set[str] = set()
    for es in by_reg.values():
        for e in es:
            if e.key in drop:
                continue
            if registry is None or e.registry == registry:
                res.kept.append(e.key)
            used.update(e.snapshot.objects)
    res.deleted_snapshots = sorted(drop)

    objects = list_existing(store)
    orphans = sorted(k for k in objects if k not in used)
    # another backup in flight? its objects are not in any index yet, and it may count on
    # objects that look orphaned. Checked after the object LIST, right before deleting.
    live, stale = _live_markers(store, now, stale_after)
    if live:
        res.sweep_skipped = (f"backup in flight ({', '.join(sorted(live))}): objects are left "
                             "for the next prune")
        orphans = []
    elif orphans:
        # a backup may have committed between the first index read and the marker check (its
        # marker is gone, its index is there): read the indexes again, last, before deleting
        for e in scan_snapshots(store):
            if e.valid and e.key not in drop:
                used.update(e.snapshot.objects)
        orphans = [k for k in orphans if k not in used]
    res.deleted_objects = len(orphans)
    res.deleted_bytes = sum(objects[k] for k in orphans)
    if dry_run:
        return res
    # indexes first: a prune cut short leaves orphans (swept next time), never a snapshot
    # naming a deleted object
    if drop:
        store.delete(sorted(drop))
    if orphans:
        store.delete(orphans)
    if stale:
        store.delete(stale)       # markers of runs that died long ago
    return res


# =========================================================================== restore

ACTION_PRESENT = "already present"
ACTION_RESTORED = "restored"
ACTION_MOVED = "moved back"
ACTION_CANNOT = "cannot restore"
ACTION_WOULD_RESTORE = "would restore"
ACTION_WOULD_MOVE = "would move back"
ACTION_LEFT_MOVED = "left moved"


@dataclass
class RestoreRow:
    repository: str
    tag: str
    digest: str
    action: str
    reason: str = ""
    state: str = ""                    # present | missing | moved (the diff)
    current: str = ""                  # the digest the tag resolved to before, when moved
    missing_manifests: int = 0
    missing_blobs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RestoreResult:
    snapshot: str
    registry: str
    dry_run: bool
    rows: list[RestoreRow] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> list[RestoreRow]:
        return [r for r in self.rows if r.action == ACTION_CANNOT]

    def counts(self) -> Counter:
        return Counter(r.action for r in self.rows)

    def summary(self) -> dict:
        c = self.counts()
        s = {
            "snapshot": self.snapshot,
            "tags in snapshot": len(self.rows),
            "missing tags": sum(1 for r in self.rows if r.state == "missing"),
            "moved tags": sum(1 for r in self.rows if r.state == "moved"),
            "missing manifests": self.stats.get("missing_manifests", 0),
            "missing blobs": self.stats.get("missing_blobs", 0),
        }
        if self.dry_run:
            s["would restore"] = c.get(ACTION_WOULD_RESTORE, 0)
            s["would move back"] = c.get(ACTION_WOULD_MOVE, 0)
        else:
            s["restored"] = c.get(ACTION_RESTORED, 0)
            s["moved back"] = c.get(ACTION_MOVED, 0)
            s["manifests put"] = self.stats.get("manifests_put", 0)
            s["blobs mounted"] = self.stats.get("blobs_mounted", 0)
            s["blobs copied from blobSource"] = self.stats.get("blobs_copied", 0)
            s["configs uploaded from snapshot"] = self.stats.get("configs_uploaded", 0)
            s["bytes copied"] = self.stats.get("bytes_copied", 0)
        s["already present"] = c.get(ACTION_PRESENT, 0)
        if c.get(ACTION_LEFT_MOVED):
            s["left moved"] = c[ACTION_LEFT_MOVED]
        s["cannot restore"] = c.get(ACTION_CANNOT, 0)
        return s

    def merge(self, other: "RestoreResult") -> None:
        self.rows += other.rows
        self.stats.update(other.stats)
        self.seconds += other.seconds


def plan_restore(snap: Snapshot, repositories: str | Iterable[str] | None = None) -> list[str]:
    """Snapshot repositories matching the glob(s), sorted."""
    if isinstance(repositories, str):
        repositories = [repositories]
    inc = list(repositories) if repositories else None
    return sorted(r for r in snap.repositories if select(r, inc, None))


class _Restorer:
    """One restore batch: phases run across every (repository, item) pair of the batch."""

    def __init__(self, client: RegistryClient, store: ObjectStore, snap: Snapshot, dry_run: bool,
                 blob_source: RegistryClient | None, concurrency: int, restore_moved: bool = True):
        self.restore_moved = restore_moved
        self.c = client
        self.store = store
        self.snap = snap
        self.dry_run = dry_run
        self.src = blob_source
        self.workers = concurrency
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self._raw: dict[str, bytes | None] = {}
        self._raw_why: dict[str, str] = {}
        self._holders: dict[str, list[str]] | None = None

    # -------------------------------------------------------------- snapshot helpers

    def bump(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

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
            try:
                data = self.store.get(object_key("manifests", digest))
                if not verify_digest(digest, data):
                    self._raw_why[digest] = f"manifest {digest} on the backup target is corrupted"
                    data = None
            except ObjectMissing:
                self._raw_why[digest] = f"manifest {digest} is not on the backup target"
                data = None
            self._raw[digest] = data
        return self._raw[digest]

    def _map(self, fn, items):
        return bounded_map(fn, items, self.workers)

    # -------------------------------------------------------------- the batch

    def run(self, repos: list[str]) -> list[RestoreRow]:
        c = self.c
        # 1. the diff: current tags, and what each snapshot tag resolves to now
        def list_tags(repo):
            try:
                return set(c.list_tags(repo))
            except NotFoundError:
                return set()
        current: dict[str, set[str]] = {}
        for repo, tags, err in self._map(list_tags, repos):
            if err is not None:
                raise err
            current[repo] = tags
        rows: dict[tuple[str, str], RestoreRow] = {}
        heads = []
        for repo in repos:
            for tag, digest in sorted(self.snap.tags(repo).items()):
                row = RestoreRow(repo, tag, digest, "", state="missing")
                rows[(repo, tag)] = row
                if tag in current[repo]:
                    heads.append((repo, tag))
        for (repo, tag), head, err in self._map(lambda it: c.head_manifest(*it), heads):
            if err is not None:
                raise err
            row = rows[(repo, tag)]
            if head is None:
                row.state = "missing"
            elif head.digest == row.digest:
                row.state, row.action = "present", ACTION_PRESENT
            else:
                row.state, row.current = "moved", head.digest
                if not self.restore_moved:
                    row.action = ACTION_LEFT_MOVED
                    row.reason = f"tag now points to {head.digest}; moved tags are left as they are"
        work = [r for r in rows.values() if r.state != "present" and not r.action]

        # 2. manifests the work needs (children first), and which the registry lacks
        needed: dict[tuple[str, str], None] = {}
        for r in work:
            for d in self.closure(r.digest):
                needed[(r.repository, d)] = None
        man_present: dict[tuple[str, str], bool] = {}
        for item, head, err in self._map(lambda it: c.head_manifest(*it), list(needed)):
            if err is not None:
                raise err
            man_present[item] = head is not None
        missing_man = [it for it, ok in man_present.items() if not ok]
        self.bump("missing_manifests", len(missing_man))

        # 3. blobs of the manifests to re-create, and which the repository lacks
        blob_desc: dict[tuple[str, str], dict] = {}
        for repo, d in missing_man:
            for b in self.blobs_of(d):
                blob_desc.setdefault((repo, b["digest"]), b)
        blob_ok: dict[tuple[str, str], bool] = {}
        for item, size, err in self._map(lambda it: c.head_blob(*it), list(blob_desc)):
            if err is not None:
                raise err
            blob_ok[item] = size is not None
        missing_blobs = [it for it, ok in blob_ok.items() if not ok]
        missing_blob_set = set(missing_blobs)
        self.bump("missing_blobs", len(missing_blobs))
        blob_why: dict[tuple[str, str], str] = {}

        # 4. where each missing blob can come from (HEADs only); a blob several repositories
        #    lack is fetched once, then mounted into the others
        def provide(blobs: list[tuple[str, str]], dry: bool) -> None:
            by_digest: dict[str, list[str]] = {}
            for repo, d in blobs:
                by_digest.setdefault(d, []).append(repo)

            def provide_all(d):
                out: dict[str, bool | str] = {}
                done_in: list[str] = []
                for repo in by_digest[d]:
                    desc = blob_desc[(repo, d)]
                    try:
                        out[repo] = self._provide_blob(repo, d, desc, dry=dry, known_in=done_in)
                    except Exception as e:  # noqa: BLE001 - reported per tag
                        out[repo] = f"{desc['role']} blob {d}: {_err(e)}"
                    if out[repo] is True:
                        done_in = [repo]
                return out

            for d, outcome, err in self._map(provide_all, sorted(by_digest)):
                for repo in by_digest[d]:
                    res = f"blob {d}: {_err(err)}" if err is not None else outcome[repo]
                    if res is True:
                        blob_ok[(repo, d)] = True
                        blob_why.pop((repo, d), None)
                    else:
                        blob_ok[(repo, d)] = False
                        blob_why[(repo, d)] = res

        provide(missing_blobs, dry=True)

        # 5. which manifests can be (re-)created: bytes on the target, blobs available,
        #    children available
        man_ok: dict[tuple[str, str], bool] = {}
        man_why: dict[tuple[str, str], str] = {}

        def can(repo, d) -> bool:
            key = (repo, d)
            if key in man_ok:
                return man_ok[key]
            if man_present.get(key):
                man_ok[key] = True
                return True
            man_ok[key] = False
            m = self.man(d)
            if m is None:
                man_why[key] = f"manifest {d} is not described in the snapshot"
                return False
            if self.raw(d) is None:
                man_why[key] = self._raw_why.get(d, f"manifest {d} unavailable")
                return False
            for ch in m.get("children", []):
                if not can(repo, ch):
                    man_why[key] = f"child {ch}: {man_why.get((repo, ch), 'cannot be restored')}"
                    return False
            for b in self.blobs_of(d):
                bk = (repo, b["digest"])
                if not blob_ok.get(bk, False):
                    man_why[key] = blob_why.get(bk, f"{b['role']} blob {b['digest']} missing")
                    return False
            man_ok[key] = True
            return True

        def judge(rs: list[RestoreRow]) -> None:
            man_ok.clear()
            man_why.clear()
            for r in rs:
                if not can(r.repository, r.digest):
                    r.action = ACTION_CANNOT
                    r.reason = man_why.get((r.repository, r.digest), "cannot be restored")

        for r in work:
            closure = self.closure(r.digest)
            r.missing_manifests = sum(1 for d in closure if not man_present.get((r.repository, d)))
            r.missing_blobs = len({b["digest"] for d in closure for b in self.blobs_of(d)
                                   if (r.repository, b["digest"]) in missing_blob_set})
        judge(work)
        todo = [r for r in work if r.action != ACTION_CANNOT]
        if self.dry_run:
            for r in todo:
                r.action = ACTION_WOULD_MOVE if r.state == "moved" else ACTION_WOULD_RESTORE
                r.reason = self._plan_reason(r)
            return list(rows.values())

        # 5b. fetch only the blobs of manifests that can be completed (nothing is uploaded
        #     for a manifest that would stay incomplete), then judge again on what arrived
        wanted = sorted({(r.repository, b["digest"]) for r in todo for d in self.closure(r.digest)
                         if not man_present.get((r.repository, d)) for b in self.blobs_of(d)
                         if (r.repository, b["digest"]) in missing_blob_set})
        provide(wanted, dry=False)
        judge(todo)
        todo = [r for r in todo if r.action != ACTION_CANNOT]

        # 6. PUT missing manifests by digest, children first (level by level)
        to_put = {}
        for r in todo:
            for d in self.closure(r.digest):
                if not man_present.get((r.repository, d)):
                    to_put[(r.repository, d)] = None
        depth_cache: dict[str, int] = {}

        def depth(d):
            if d not in depth_cache:
                ch = (self.man(d) or {}).get("children", [])
                depth_cache[d] = 0 if not ch else 1 + max(depth(x) for x in ch)
            return depth_cache[d]
        put_failed: dict[tuple[str, str], str] = {}
        for level in sorted({depth(d) for _, d in to_put}):
            items = [it for it in to_put if depth(it[1]) == level
                     and not any((it[0], ch) in put_failed for ch in self.closure(it[1])[:-1])]
            for item, _out, err in self._map(self._put_by_digest, items):
                if err is not None:
                    put_failed[item] = f"PUT manifest {item[1]} failed: {_err(err)}"
                else:
                    self.bump("manifests_put", 1)

        # 7. tags, with the exact snapshot bytes
        def put_tag(r: RestoreRow):
            failed = [put_failed[(r.repository, d)] for d in self.closure(r.digest)
                      if (r.repository, d) in put_failed]
            if failed:
                raise BackupError(failed[0])
            m = self.man(r.digest)
            c.put_manifest(r.repository, r.tag, self.raw(r.digest), m["media_type"])

        for r, _out, err in self._map(put_tag, todo):
            if err is not None:
                r.action, r.reason = ACTION_CANNOT, _err(err)
            else:
                self.bump("tags_put", 1)

        # 8. verify: every restored tag resolves to the snapshot's digest
        put_ok = [r for r in todo if r.action != ACTION_CANNOT]
        for r, head, err in self._map(lambda r: c.head_manifest(r.repository, r.tag), put_ok):
            if err is not None:
                r.action, r.reason = ACTION_CANNOT, f"verify failed: {_err(err)}"
            elif head is None:
                r.action, r.reason = ACTION_CANNOT, "verify failed: tag not found after PUT"
            elif head.digest != r.digest:
                r.action, r.reason = ACTION_CANNOT, f"verify failed: tag resolves to {head.digest}"
            else:
                r.action = ACTION_MOVED if r.state == "moved" else ACTION_RESTORED
                r.reason = self._plan_reason(r, done=True)
        return list(rows.values())

    def _plan_reason(self, r: RestoreRow, done: bool = False) -> str:
        parts = []
        if r.state == "moved":
            parts.append(f"tag pointed to {r.current}")
        else:
            parts.append("tag missing")
        if r.missing_manifests:
            parts.append(f"{r.missing_manifests} manifest(s) {'re-created' if done else 'to re-create'}")
        if r.missing_blobs:
            parts.append(f"{r.missing_blobs} blob(s) {'supplied' if done else 'to supply'}")
        return "; ".join(parts)

    def _put_by_digest(self, item):
        repo, d = item
        m = self.man(d)
        self.c.put_manifest(repo, d, self.raw(d), m["media_type"])

    def _provide_blob(self, repo: str, digest: str, desc: dict, *, dry: bool,
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


def _err(e: BaseException) -> str:
    return scrub(str(e))[:300] or type(e).__name__


def restore_batch(client: RegistryClient, store: ObjectStore, snap: Snapshot,
                  repositories: list[str], *, dry_run: bool = True,
                  blob_source: RegistryClient | None = None, restore_moved: bool = True,
                  concurrency: int | None = None) -> RestoreResult:
    """Diff and (unless ``dry_run``) restore these repositories from the snapshot.
    ``restore_moved=False`` leaves tags that now point elsewhere as they are."""
    t0 = time.perf_counter()
    r = _Restorer(client, store, snap, dry_run, blob_source, concurrency or client.concurrency,
                  restore_moved)
    rows = r.run(list(repositories))
    rows.sort(key=lambda x: (x.repository, x.tag))
    return RestoreResult(snapshot=snap.id, registry=client.name, dry_run=dry_run, rows=rows,
                         stats=r.stats, seconds=time.perf_counter() - t0)


def restore(client: RegistryClient, store: ObjectStore, *, snapshot: str = "latest",
            registry: str | None = None, repositories: str | Iterable[str] | None = None,
            dry_run: bool = True, blob_source: RegistryClient | None = None,
            restore_moved: bool = True, batch_size: int = 25,
            concurrency: int | None = None) -> RestoreResult:
    """Restore a registry from a snapshot (``latest`` or an id) of ``registry`` (default: the
    client's name; pass another name to restore one registry's snapshot into another).
    Dry run (the default) reports the diff and changes nothing."""
    snap = load_snapshot(store, registry or client.name, snapshot)
    repos = plan_restore(snap, repositories)
    total = RestoreResult(snapshot=snap.id, registry=client.name, dry_run=dry_run)
    for i in range(0, len(repos), batch_size):
        total.merge(restore_batch(client, store, snap, repos[i:i + batch_size], dry_run=dry_run,
                                  blob_source=blob_source, restore_moved=restore_moved,
                                  concurrency=concurrency))
    return total


# =========================================================================== CLI helper


def snapshot_rows(store: ObjectStore, registry: str | None = None) -> list[dict]:
    rows = []
    for e in scan_snapshots(store, registry):
        s = e.snapshot
        c = s.counts if s else {}
        rows.append({
            "registry": e.registry,
            "snapshot": e.id,
            "status": "complete" if s else f"ignored: {e.reason}",
            "finished": s.created if s else "",
            "repositories": c.get("repositories", ""),
            "tags": c.get("tags", ""),
            "manifests": c.get("manifests", ""),
            "configs": c.get("configs", ""),
            "layers": c.get("layers", ""),
            "layer_bytes": c.get("layer_bytes", ""),
            "objects": c.get("objects", ""),
            "objects_written": c.get("objects_written", ""),
        })
    return rows


def list_snapshots_cli(cfg, registry: str | None = None) -> list[dict]:
    """Rows for ``regkeeper snapshots list``: every index on the configured target (newest
    last), including ignored ones with the reason."""
    bk = require_backup_config(cfg)
    if registry is not None:
        registry = cfg.registry(registry).name
    store = open_target(bk.target, bk)
    return snapshot_rows(store, registry)
