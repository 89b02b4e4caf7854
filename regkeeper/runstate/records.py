"""Durable JSON records in the state directory: written whole or not at all, and on disk before
the call returns (``util.atomic_write`` with fsync, then an fsync of the directory so the rename
itself survives a crash). :func:`create_exclusive` creates a record only when none exists
(``os.link`` of a complete temp file: atomic on local filesystems and NFS; where hard links are
not supported, ``O_EXCL``)."""

import errno
import json
import logging
import os
import tempfile
from pathlib import Path

from ..errors import StateError
from ..util import atomic_write

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def write_record(path: Path, doc: dict) -> None:
    """Replace the record at ``path`` durably (readers see the old or the new one)."""
    try:
        atomic_write(path, _encode(doc), fsync=True)
    except OSError as e:
        raise StateError(f"state directory: cannot write {path}: {e.strerror or e}") from None
    fsync_dir(path.parent)


def create_exclusive(path: Path, doc: dict) -> bool:
    """Create the record at ``path`` only if there is none; True when created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    except OSError as e:
        raise StateError(f"state directory: cannot write in {path.parent}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_encode(doc))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise StateError(f"state directory: cannot create {path}: {e.strerror or e}") from None
            return _create_excl_fallback(path, doc)
        fsync_dir(path.parent)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _create_excl_fallback(path: Path, doc: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(_encode(doc))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return True


def read_record(path: Path) -> dict | None:
    """The record, None when absent. A record that is not JSON (a disk fault) reads as
    ``{"corrupt": True}`` so callers can judge it by its age."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"state directory: cannot read {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
        return doc if isinstance(doc, dict) else {"corrupt": True}
    except ValueError:
        log.warning("state record %s is not JSON", path)
        return {"corrupt": True}


def remove_record(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StateError(f"state directory: cannot remove {path}: {e.strerror or e}") from None
    fsync_dir(path.parent)
    return True


def age_seconds(path: Path) -> float | None:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None
