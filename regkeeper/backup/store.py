"""Backup targets: where snapshots live.

An :class:`ObjectStore` is a directory (:class:`FileStore`: atomic, fsynced writes) or an S3
bucket/prefix (:class:`S3Store`: every PUT checksummed by the server). ``open_target`` turns
``backup.target`` (``file://...`` or ``s3://bucket/prefix``) into one. Keys are relative and
checked (no absolute paths, no ``..``). The backup errors live here too: :class:`BackupError`
(names the target, key or snapshot) and :class:`ObjectMissing` (the key does not exist).
"""

import base64
import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from ..errors import BackupError, ObjectMissing
from ..util import atomic_write, scrub

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
    def _init_stats(self) -> None:
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

    def __reduce__(self):  # a task argument in a process worker (Dask): the same directory
        return (FileStore, (self.root,))

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
        self.recipe: tuple | None = None  # (target url, backup config) when built by open_target
        self._init_stats()

    def __reduce__(self):
        # a process worker (Dask) opens its own boto3 client from the config's secret references
        if self.recipe is None:
            raise TypeError(f"S3Store {self.url} was not built by open_target and cannot be pickled")
        return (open_target, self.recipe)

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
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ChecksumSHA256=checksum,
                ContentType="application/json" if key.endswith(".json") else "application/octet-stream",
            )
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
            chunk = keys[i : i + 1000]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
                )
            except Exception as e:  # noqa: BLE001
                raise self._error("DELETE", f"{len(chunk)} keys", e) from None
            errs = resp.get("Errors") or []
            if errs:
                first = errs[0]
                raise BackupError(
                    f"{self.url}: DELETE failed for {len(errs)} key(s), e.g. "
                    f"{first.get('Key')}: {first.get('Code')}"
                )
            n += len(chunk)
        self._count("DELETE", n)
        return n


def open_target(url: str, backup_cfg=None) -> ObjectStore:
    """``file:///abs/path``, ``file://./relative`` or ``s3://bucket/prefix`` -> an ObjectStore.
    For S3, endpoint, credentials and region come from the ``backup`` config section."""
    if url.startswith("file://"):
        rest = url[len("file://") :]
        if not rest:
            raise BackupError(f"backup.target {url!r}: no path after file://")
        return FileStore(os.path.expanduser(rest))
    if url.startswith("s3://"):
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise BackupError(f"backup.target {url!r}: no bucket after s3://")
        from ..storage import s3_client

        endpoint = getattr(backup_cfg, "endpoint", None)
        client = s3_client(
            endpoint,
            getattr(backup_cfg, "access_key", None),
            getattr(backup_cfg, "secret_key", None),
            getattr(backup_cfg, "region", None) or "us-east-1",
        )
        store = S3Store(client, bucket, prefix)
        store.recipe = (url, backup_cfg)
        return store
    raise BackupError(f"backup.target must be s3://bucket/prefix or file:///path, got {url!r}")
