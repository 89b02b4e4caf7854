"""Undoable deletes: every gc, expire and deleteExtraneous delete is held under a namespace of
the registry for a window (``hold``), recorded in the registry itself (``record``), listed
(``listing``), undone on demand (``undo``) and released for good after the window
(``release``). Prefect-free; the delete path (``prune/delete.py``) is the only caller of
``hold``."""

from .hold import HoldResult, Quarantine
from .record import Entry, Record, in_namespace, original_repo, parse_record, quarantine_repo, run_tag

__all__ = [
    "Entry",
    "HoldResult",
    "Quarantine",
    "Record",
    "in_namespace",
    "original_repo",
    "parse_record",
    "quarantine_repo",
    "run_tag",
]
