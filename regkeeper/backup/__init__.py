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

Where each concern lives:

    store.py           the targets: ObjectStore, FileStore (directory), S3Store, open_target;
                       BackupError, ObjectMissing
    snapshot.py        keys and ids, seal/unseal of an index, Snapshot; scan/list/load snapshots
    batch.py           one batch: scan repositories, upload the manifests and configs missing
    referrers.py       what a snapshot records about each image's referrers (format /2)
    run.py             one backup run: plan, begin (in-flight marker), commit the index LAST, abort
    retention.py       prune: keep the last N snapshots, sweep unused objects (in-flight aware)
    restore_run.py     restore entry points: plan_restore, restore_batch, restore
    restore_steps.py   the phases of one restore batch (diff ... verify)
    restore_referrers.py  the untagged referrers, after their subjects, through the same phases
    restore_snapshot.py what a restore reads from a snapshot (closure, blobs, holders, bytes)
    restore_blobs.py   where a missing blob can come from, handed to the one blob transfer
    restore_result.py  per-tag actions, RestoreRow, RestoreResult
    report.py          backup and restore Reports, repository/snapshot rows, `snapshots list`
    config.py          the backup section: which registries, the section itself
"""

from .batch import CONFIG_MAX_BYTES, BatchResult, backup_batch
from .config import backup_registries, require_backup_config
from .report import (
    RESTORE_COLUMNS,
    backup_report,
    list_snapshots_cli,
    repository_rows,
    restore_report,
    snapshot_rows,
)
from .restore_result import (
    ACTION_CANNOT,
    ACTION_LEFT_MOVED,
    ACTION_MOVED,
    ACTION_PRESENT,
    ACTION_RESTORED,
    ACTION_WOULD_MOVE,
    ACTION_WOULD_RESTORE,
    RestoreResult,
    RestoreRow,
)
from .restore_run import plan_restore, restore, restore_batch
from .retention import INFLIGHT_STALE, PruneResult, prune
from .run import (
    BackupResult,
    BackupRun,
    abort_backup,
    backup,
    begin_backup,
    commit_snapshot,
    inflight_key,
    plan_backup,
)
from .snapshot import (
    _ID_RE,
    FORMAT,
    Snapshot,
    SnapshotEntry,
    key_digest,
    list_existing,
    list_snapshots,
    load_snapshot,
    new_snapshot_id,
    object_key,
    scan_snapshots,
    seal,
    snapshot_key,
    unseal,
)
from .store import (
    BackupError,
    FileStore,
    ObjectMissing,
    ObjectStore,
    S3Store,
    open_target,
)

__all__ = [
    "CONFIG_MAX_BYTES",
    "BatchResult",
    "backup_batch",
    "backup_registries",
    "require_backup_config",
    "RESTORE_COLUMNS",
    "backup_report",
    "list_snapshots_cli",
    "repository_rows",
    "restore_report",
    "snapshot_rows",
    "ACTION_CANNOT",
    "ACTION_LEFT_MOVED",
    "ACTION_MOVED",
    "ACTION_PRESENT",
    "ACTION_RESTORED",
    "ACTION_WOULD_MOVE",
    "ACTION_WOULD_RESTORE",
    "RestoreResult",
    "RestoreRow",
    "plan_restore",
    "restore",
    "restore_batch",
    "INFLIGHT_STALE",
    "PruneResult",
    "prune",
    "BackupResult",
    "BackupRun",
    "abort_backup",
    "backup",
    "begin_backup",
    "commit_snapshot",
    "inflight_key",
    "plan_backup",
    "_ID_RE",
    "FORMAT",
    "Snapshot",
    "SnapshotEntry",
    "key_digest",
    "list_existing",
    "list_snapshots",
    "load_snapshot",
    "new_snapshot_id",
    "object_key",
    "scan_snapshots",
    "seal",
    "snapshot_key",
    "unseal",
    "BackupError",
    "FileStore",
    "ObjectMissing",
    "ObjectStore",
    "S3Store",
    "open_target",
]
