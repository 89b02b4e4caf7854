"""One backup run: plan, begin (in-flight marker, LIST of the target), batches, commit, abort.

A run writes its in-flight marker first (a concurrent prune then leaves fresh objects alone),
uploads objects batch by batch, and writes the snapshot index LAST, only after checking every
object it names is on the target; then it drops the marker. A run that dies before its index
leaves no snapshot behind (its objects are reused by the next run); a marker left by a dead run
goes stale (``retention.INFLIGHT_STALE``) and the next prune removes it.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..globs import select
from ..oci import RegistryClient
from ..util import utcnow
from .batch import CONFIG_MAX_BYTES, BatchResult, backup_batch
from .report import repository_rows
from .retention import PruneResult, prune
from .snapshot import (
    FORMAT,
    Snapshot,
    list_existing,
    new_snapshot_id,
    object_key,
    seal,
    snapshot_key,
)
from .store import BackupError, ObjectStore

log = logging.getLogger(__name__)


@dataclass
class BackupRun:
    """State shared by the batches of one backup run."""

    id: str
    registry: str
    registry_url: str
    started: str
    existing: dict[str, int]  # key -> size on the target when the run started
    include: list[str] | None = None
    exclude: list[str] | None = None


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
    pruned: PruneResult | None = None

    def rows(self) -> list[dict]:
        return repository_rows(self.snapshot)

    def summary(self) -> dict:
        c = self.snapshot.counts
        return {
            "snapshot": self.snapshot.id,
            "repositories": c.get("repositories", 0),
            "tags": c.get("tags", 0),
            "manifests": c.get("manifests", 0),
            "referrers": c.get("referrers", 0),
            "configs": c.get("configs", 0),
            "layer descriptors": c.get("layers", 0),
            "layer bytes (described, not copied)": c.get("layer_bytes", 0),
            "objects written": self.objects_written,
            "bytes written": self.bytes_written,
            "objects already on target": self.objects_total - self.objects_written,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 2),
        }


def plan_backup(
    client: RegistryClient, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> list[str]:
    """The repositories a backup covers, sorted."""
    inc = list(include) if include else None
    exc = list(exclude) if exclude else None
    return sorted(r for r in client.repositories() if select(r, inc, exc))


def inflight_key(registry: str, run_id: str) -> str:
    return f"inflight/{registry}/{run_id}.json"


def begin_backup(
    store: ObjectStore,
    client: RegistryClient,
    *,
    registry: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    snapshot_id: str | None = None,
) -> BackupRun:
    """Mark the run in flight (so a concurrent prune keeps our fresh objects) and learn which
    objects the target already holds: one paginated LIST per prefix."""
    reg = registry or client.name
    now = utcnow()
    run = BackupRun(
        id=snapshot_id or new_snapshot_id(now),
        registry=reg,
        registry_url=client.url,
        started=now.isoformat(),
        existing={},
        include=list(include) if include else None,
        exclude=list(exclude) if exclude else None,
    )
    store.put(
        inflight_key(reg, run.id),
        json.dumps({"id": run.id, "registry": reg, "started": run.started}).encode(),
    )
    run.existing = list_existing(store)
    return run


def abort_backup(store: ObjectStore, run: BackupRun) -> None:
    """Best effort: drop the in-flight marker of a failed run (objects stay for the next run)."""
    try:
        store.delete([inflight_key(run.registry, run.id)])
    except Exception as e:  # noqa: BLE001
        log.warning("backup %s: cannot remove in-flight marker: %s", run.id, e)


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
        raise BackupError(
            f"backup {run.id} of {run.registry}: {len(missing)} object(s) the "
            f"snapshot needs are not on {store.url} (e.g. {missing[0]}); no index written"
        )
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
        "referrers_mode": next((b.referrers_mode for b in batches if b.referrers_mode), None),
        "counts": {
            "repositories": len(repos),
            "tags": sum(len(r["tags"]) for r in repos.values()),
            "manifests": len(manifests),
            "referrers": sum(len(v) for r in repos.values() for v in (r.get("referrers") or {}).values()),
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
    abort_backup(store, run)  # the marker is no longer needed
    return Snapshot(run.id, run.registry, json.loads(raw), key)


def backup(
    client: RegistryClient,
    store: ObjectStore,
    *,
    registry: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    batch_size: int = 25,
    concurrency: int = 8,
    keep: int | None = None,
    snapshot_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackupResult:
    """One complete backup run of a registry (the flow runs the same steps as tasks)."""
    t0 = time.perf_counter()
    before = Counter(client.stats)
    store_before = Counter(store.stats)
    repos = plan_backup(client, include, exclude)
    run = begin_backup(
        store, client, registry=registry, include=include, exclude=exclude, snapshot_id=snapshot_id
    )
    batches = []
    try:
        for i in range(0, len(repos), batch_size):
            chunk = repos[i : i + batch_size]
            batches.append(backup_batch(client, store, chunk, existing=run.existing, concurrency=concurrency))
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
        snapshot=snap,
        objects_written=written,
        bytes_written=sum(sum(b.written.values()) for b in batches),
        objects_total=len(snap.objects),
        seconds=time.perf_counter() - t0,
        errors=[e for b in batches for e in b.errors],
        requests={
            k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
        },
        store_stats={
            k: store.stats.get(k, 0) - store_before.get(k, 0)
            for k in store.stats
            if store.stats.get(k, 0) != store_before.get(k, 0)
        },
        pruned=pruned,
    )
