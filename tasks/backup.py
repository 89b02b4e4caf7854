"""Tasks for backup and restore: one task per repository batch, never per tag. Thin wrappers
over regkeeper.backup (all logic lives there)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper import backup as core
from regkeeper.context import RunContext
from tasks.common import RETRY, logger


@task(name="list-backup-repositories", task_run_name="list repositories of {registry}", **RETRY)
def list_backup_repositories(
    ctx: RunContext, registry: str, include: list[str] | None = None, exclude: list[str] | None = None
) -> list[str]:
    repos = core.plan_backup(ctx.client(registry), include, exclude)
    logger().info("%s: %d repositories to back up", registry, len(repos))
    return repos


@task(name="begin-backup", task_run_name="begin backup of {registry}", **RETRY)
def begin_backup(
    ctx: RunContext, registry: str, store, include: list[str] | None = None, exclude: list[str] | None = None
) -> core.BackupRun:
    run = core.begin_backup(store, ctx.client(registry), registry=registry, include=include, exclude=exclude)
    logger().info("backup %s of %s: %d objects already on %s", run.id, registry, len(run.existing), store.url)
    return run


@task(name="list-target-objects", **RETRY)
def list_target_objects(store) -> dict[str, int]:
    return core.list_existing(store)


@task(name="backup-batch", task_run_name="backup {registry} [{label}]", **RETRY)
def backup_batch(
    ctx: RunContext,
    registry: str,
    store,
    repositories: list[str],
    existing: dict[str, int],
    dry_run: bool = False,
    label: str = "",
) -> core.BatchResult:
    res = core.backup_batch(ctx.client(registry), store, repositories, existing=existing, dry_run=dry_run)
    logger().info(
        "%s [%s]: %d repositories, %d manifests, %s %d objects",
        registry,
        label,
        len(res.repositories),
        len(res.manifests),
        "would write" if dry_run else "wrote",
        len(res.would_write) if dry_run else len(res.written),
    )
    return res


@task(name="write-snapshot-index", task_run_name="write snapshot index of {registry}", **RETRY)
def commit_snapshot(
    registry: str, store, run: core.BackupRun, batches: list[core.BatchResult]
) -> core.Snapshot:
    snap = core.commit_snapshot(store, run, batches)
    logger().info("snapshot %s of %s written: %s", snap.id, registry, snap.counts)
    return snap


@task(name="abort-backup", retries=0, cache_policy=NO_CACHE)
def abort_backup(store, run: core.BackupRun) -> None:
    core.abort_backup(store, run)


@task(name="prune-snapshots", task_run_name="prune snapshots of {registry}", **RETRY)
def prune_snapshots(store, keep: int, registry: str, dry_run: bool = False) -> core.PruneResult:
    res = core.prune(store, keep, registry=registry, dry_run=dry_run)
    logger().info(
        "prune %s (keep %d)%s: %d snapshots, %d objects",
        registry,
        keep,
        " [dry run]" if dry_run else "",
        len(res.deleted_snapshots),
        res.deleted_objects,
    )
    return res


@task(name="load-snapshot", task_run_name="load snapshot {snapshot} of {registry}", **RETRY)
def load_snapshot(store, registry: str, snapshot: str) -> core.Snapshot:
    snap = core.load_snapshot(store, registry, snapshot)
    logger().info("snapshot %s of %s: %s", snap.id, registry, snap.counts)
    return snap


@task(name="restore-batch", task_run_name="restore {registry} [{label}]", **RETRY)
def restore_batch(
    ctx: RunContext,
    registry: str,
    store,
    snap: core.Snapshot,
    repositories: list[str],
    dry_run: bool = True,
    blob_source: str | None = None,
    restore_moved: bool = True,
    label: str = "",
) -> core.RestoreResult:
    src = ctx.client(blob_source) if blob_source else None
    res = core.restore_batch(
        ctx.client(registry),
        store,
        snap,
        repositories,
        dry_run=dry_run,
        blob_source=src,
        restore_moved=restore_moved,
    )
    logger().info("%s [%s]: %s", registry, label, dict(res.counts()))
    return res
