"""Count the files a block of code opens, however it opens them (builtins.open, pathlib, io.open
and os.open all raise the ``open`` audit event, PEP 578). An audit hook cannot be removed: one
is installed for the process on first use and records only inside ``files_opened``."""

import sys
import threading
from contextlib import contextmanager
from pathlib import Path

_RECORDERS: list[list[str]] = []
_LOCK = threading.Lock()
_INSTALLED = False


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _RECORDERS and isinstance(args[0], (str, Path)):
        with _LOCK:
            for rec in _RECORDERS:
                rec.append(str(args[0]))


@contextmanager
def files_opened(under: Path):
    """Yields a list that, after the block, holds every file path under ``under`` opened in it
    (by any thread), once per open."""
    global _INSTALLED
    with _LOCK:
        if not _INSTALLED:
            sys.addaudithook(_audit)
            _INSTALLED = True
        rec: list[str] = []
        _RECORDERS.append(rec)
    got: list[str] = []
    try:
        yield got
    finally:
        with _LOCK:
            _RECORDERS.remove(rec)
        got.extend(p for p in rec if p.startswith(str(under)))
