"""Physical storage usage: what the registry's storage holds and how big it may get.

A filesystem walk (hard links once) gives two figures: **file bytes** (the sum of the regular
files' sizes, ``du -sb`` without directories) and **allocated bytes** (what the filesystem
allocates for the tree, files and directories, ``st_blocks * 512``: ``du -s -B1``, the basis
of ``df``'s used and size). A paginated S3 listing gives **object bytes**.
:func:`resolve_capacity` says what 100% is (``capacityBytes``, else the filesystem size; S3
without ``capacityBytes`` has no ratio) and :func:`used_on_basis` which figure is compared with
it, like with like: allocated bytes against the filesystem's size, file (or object) bytes
against ``capacityBytes`` (a quota on what the registry stores, like Harbor's or an S3 bill).
"""

import logging
import os
import time
from dataclasses import dataclass
from typing import Literal

from ..errors import CapacityError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StorageUsage:
    bytes_used: int
    files: int
    fs_size_bytes: int | None
    fs_free_bytes: int | None
    source: Literal["filesystem", "s3"]
    root: str
    seconds: float = 0.0  # how long the measurement took
    errors: int = 0  # directories that could not be read (filesystem)
    allocated_bytes: int | None = None  # filesystem: st_blocks * 512 of files and directories

    @property
    def fs_used_bytes(self) -> int | None:
        if self.fs_size_bytes is None or self.fs_free_bytes is None:
            return None
        return self.fs_size_bytes - self.fs_free_bytes


BASIS_ALLOCATED = "allocated bytes"
BASIS_FILE = "file bytes"
BASIS_OBJECT = "object bytes"


def filesystem_usage(root: str | os.PathLike) -> StorageUsage:
    """File bytes (st_size, ``du -sb`` without directories) and count of the regular files
    under ``root``, allocated bytes (st_blocks * 512 of files, directories and symlinks,
    ``du -s -B1``), and the size / free space of its filesystem (statvfs; free = available to
    non-root).

    Iterative os.scandir walk; symlinks are not followed; a hard-linked file is counted once.
    Directories that vanish meanwhile (a concurrent garbage-collect) are skipped; unreadable
    ones are counted in ``errors`` and logged."""
    t0 = time.perf_counter()
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise CapacityError(f"storage path {root}: not a directory (storage.path)")
    total = files = errors = 0
    allocated = os.stat(root).st_blocks * 512
    seen_inodes: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except FileNotFoundError:
            continue
        except OSError as e:
            errors += 1
            log.warning("capacity: cannot read directory %s: %s", d, e.strerror)
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                    if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                        key = (st.st_dev, st.st_ino)
                        if key in seen_inodes:
                            continue
                        seen_inodes.add(key)
                    allocated += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += st.st_size
                        files += 1
                except FileNotFoundError:
                    continue
    vfs = os.statvfs(root)
    return StorageUsage(
        bytes_used=total,
        files=files,
        fs_size_bytes=vfs.f_blocks * vfs.f_frsize,
        fs_free_bytes=vfs.f_bavail * vfs.f_frsize,
        source="filesystem",
        root=root,
        seconds=time.perf_counter() - t0,
        errors=errors,
        allocated_bytes=allocated,
    )


def s3_usage(client, bucket: str, prefix: str = "", *, page_size: int = 1000) -> StorageUsage:
    """Total bytes and object count under ``s3://bucket/prefix`` (paginated ListObjectsV2,
    ``page_size`` keys per page) through a boto3 S3 client (which carries its own timeouts and
    retries)."""
    from botocore.exceptions import BotoCoreError, ClientError

    t0 = time.perf_counter()
    total = objects = 0
    root = f"s3://{bucket}/{prefix}"
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        ):
            for obj in page.get("Contents", ()) or ():
                total += int(obj.get("Size", 0))
                objects += 1
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise CapacityError(f"{root}: listing failed: {err.get('Code', 'error')} (HTTP {status})") from None
    except BotoCoreError as e:
        raise CapacityError(f"{root}: listing failed: {type(e).__name__}") from None
    return StorageUsage(
        bytes_used=total,
        files=objects,
        fs_size_bytes=None,
        fs_free_bytes=None,
        source="s3",
        root=root,
        seconds=time.perf_counter() - t0,
    )


def measure_storage(rc, s3_client=None) -> StorageUsage | None:
    """Physical usage for a ``config.RegistryConfig``; None when regkeeper has no access to the
    registry's storage (no ``storage`` section and not an S3 registry with keys)."""
    from ..storage import S3Storage, storage_for

    reader = storage_for(rc)
    if reader is None:
        if rc.type == "proxy" and rc.proxy_cache is not None and rc.proxy_cache.storage:
            return filesystem_usage(rc.proxy_cache.storage)
        return None
    if s3_client is not None and isinstance(reader, S3Storage):
        reader.client = s3_client
    return storage_usage(reader)


def storage_usage(reader) -> StorageUsage | None:
    """Physical usage of a ``storage.StorageReader`` (the registry's whole root)."""
    if reader is None:
        return None
    if reader.kind == "filesystem":
        return filesystem_usage(reader.root)
    if reader.kind == "s3":
        return s3_usage(reader.client, reader.bucket, reader.root_prefix)
    return None


def resolve_capacity(
    usage: StorageUsage | None, capacity_bytes: int | None
) -> tuple[int | None, str, str | None]:
    """``(capacity, source, note)``: the configured ``capacityBytes``, else the filesystem size;
    for S3 without ``capacityBytes`` there is no capacity and the note says so."""
    if capacity_bytes:
        return int(capacity_bytes), "capacityBytes", None
    if usage is None:
        return None, "none", "storage not readable by regkeeper (no storage section): no usage ratio"
    if usage.source == "filesystem" and usage.fs_size_bytes:
        return usage.fs_size_bytes, "filesystem", None
    if usage.source == "s3":
        return (
            None,
            "none",
            (
                "S3 storage has no size limit and no capacityBytes is configured: "
                "usage is reported, no usage ratio and no threshold alerts"
            ),
        )
    return None, "none", "no capacityBytes configured and no filesystem size: no usage ratio"


def used_on_basis(usage: StorageUsage | None, capacity_source: str) -> tuple[int | None, str]:
    """``(bytes, basis)``: the usage figure to compare with the capacity, like with like.

    Against the filesystem's size (no ``capacityBytes``): allocated bytes, what ``df`` counts
    (summing file sizes misses directories and the tail of every partial block: 26-42% of a
    registry made of small files, so thresholds would fire late). Against ``capacityBytes``:
    file bytes (object bytes on S3), what the registry stores."""
    if usage is None:
        return None, BASIS_FILE
    if usage.source == "s3":
        return usage.bytes_used, BASIS_OBJECT
    if capacity_source == "filesystem" and usage.allocated_bytes is not None:
        return usage.allocated_bytes, BASIS_ALLOCATED
    return usage.bytes_used, BASIS_FILE
