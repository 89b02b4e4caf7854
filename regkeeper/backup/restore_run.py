"""Restore entry points: which repositories (``plan_restore``), one batch (``restore_batch``)
and a whole registry from a snapshot (``restore``). The phases of a batch are in
``restore_steps``."""

import time
from collections.abc import Iterable

from ..globs import select
from ..oci import RegistryClient
from .restore_referrers import referrer_report_rows
from .restore_result import RestoreResult
from .restore_steps import _Restorer
from .snapshot import Snapshot, load_snapshot
from .store import ObjectStore


def plan_restore(snap: Snapshot, repositories: str | Iterable[str] | None = None) -> list[str]:
    """Snapshot repositories matching the glob(s), sorted."""
    if isinstance(repositories, str):
        repositories = [repositories]
    inc = list(repositories) if repositories else None
    return sorted(r for r in snap.repositories if select(r, inc, None))


def restore_batch(
    client: RegistryClient,
    store: ObjectStore,
    snap: Snapshot,
    repositories: list[str],
    *,
    dry_run: bool = True,
    blob_source: RegistryClient | None = None,
    restore_moved: bool = True,
    concurrency: int | None = None,
) -> RestoreResult:
    """Diff and (unless ``dry_run``) restore these repositories from the snapshot.
    ``restore_moved=False`` leaves tags that now point elsewhere as they are."""
    t0 = time.perf_counter()
    r = _Restorer(client, store, snap, dry_run, blob_source, concurrency or client.concurrency, restore_moved)
    rows = r.run_with_referrers(list(repositories))
    rows.sort(key=lambda x: (x.repository, x.kind != "tag", x.tag))
    return RestoreResult(
        snapshot=snap.id,
        registry=client.name,
        dry_run=dry_run,
        rows=rows,
        stats=r.stats,
        seconds=time.perf_counter() - t0,
        referrers=referrer_report_rows(snap, list(repositories), rows),
        referrers_mode=client.referrers_mode,
    )


def restore(
    client: RegistryClient,
    store: ObjectStore,
    *,
    snapshot: str = "latest",
    registry: str | None = None,
    repositories: str | Iterable[str] | None = None,
    dry_run: bool = True,
    blob_source: RegistryClient | None = None,
    restore_moved: bool = True,
    batch_size: int = 25,
    concurrency: int | None = None,
) -> RestoreResult:
    """Restore a registry from a snapshot (``latest`` or an id) of ``registry`` (default: the
    client's name; pass another name to restore one registry's snapshot into another).
    Dry run (the default) reports the diff and changes nothing."""
    snap = load_snapshot(store, registry or client.name, snapshot)
    repos = plan_restore(snap, repositories)
    total = RestoreResult(snapshot=snap.id, registry=client.name, dry_run=dry_run)
    for i in range(0, len(repos), batch_size):
        total.merge(
            restore_batch(
                client,
                store,
                snap,
                repos[i : i + batch_size],
                dry_run=dry_run,
                blob_source=blob_source,
                restore_moved=restore_moved,
                concurrency=concurrency,
            )
        )
    return total
