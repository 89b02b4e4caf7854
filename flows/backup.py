"""backup: snapshot registry metadata (tags, manifests, configs, layer descriptors) to S3 or a
directory; nightly at 02:00 by default. restore: put a registry back as a snapshot saw it,
verified, saying what could not be restored. Both dry-run capable; restore is a dry run unless
asked otherwise."""

from typing import Annotated, Optional

from prefect import flow
from prefect.utilities.annotations import quote
from pydantic import Field

from flows.params import ConfigPath
from flows.runner import RegkeeperTaskRunner
from regkeeper import backup as core
from regkeeper.context import RunContext
from regkeeper.errors import RegkeeperError
from regkeeper.util import batch_label, batches, utcnow
from tasks.backup import (
    abort_backup,
    backup_batch,
    begin_backup,
    commit_snapshot,
    list_backup_repositories,
    list_target_objects,
    load_snapshot,
    prune_snapshots,
    restore_batch,
)
from tasks.common import gather, logger, publish_report, report_job_metrics, with_reports
from tasks.recovery import add_notes, begin_run

BATCH = 25  # repositories per backup / restore task


def _collect(batch_list: list, futures: list, what: str) -> tuple[list, list[str]]:
    """Results of submitted batch tasks; a failed batch does not stop the others."""
    results, errors = [], []
    for b, res, err in gather(batch_list, futures):
        if err is None:
            results.append(res)
        else:
            errors.append(f"{what} [{batch_label(b)}] failed: {err}")
    return results, errors


def _backup_one(
    ctx: RunContext,
    store,
    registry: str,
    *,
    dry_run: bool,
    keep: int,
    include: Optional[list[str]],
    exclude: Optional[list[str]],
    notes: list[str],
):
    log = logger()
    started = utcnow()
    client = ctx.client(registry)
    before = dict(client.stats)
    run = snap = pruned = None
    results: list[core.BatchResult] = []
    errors: list[str] = []
    try:
        repos = list_backup_repositories(ctx, registry, include, exclude)
        if dry_run:
            existing = list_target_objects(store)
        else:
            run = begin_backup(ctx, registry, store, include, exclude)
            existing = run.existing
        todo = batches(repos, BATCH)
        futures = [
            backup_batch.submit(  # type: ignore[call-overload]  # prefect: quote(x) for x
                ctx, registry, store, b, quote(existing), dry_run=dry_run, label=batch_label(b)
            )
            for b in todo
        ]
        results, errors = _collect(todo, futures, "backup batch")
        if not errors and not dry_run:
            snap = commit_snapshot(  # type: ignore[call-overload]  # prefect: quote(x) for x
                registry, store, quote(run), quote(results)
            )
    except Exception as e:  # noqa: BLE001 - reported, then the run fails
        errors.append(str(e) if isinstance(e, RegkeeperError) else f"{type(e).__name__}: {e}")
    finally:
        if run is not None and snap is None:
            abort_backup(  # type: ignore[call-overload]  # prefect: quote(x) for x
                store, quote(run)
            )
    if dry_run or snap is not None:
        try:
            pruned = prune_snapshots(store, keep, registry, dry_run=dry_run)
        except Exception as e:  # noqa: BLE001
            errors.append(f"prune failed (the snapshot itself is complete): {e}")
    after = client.stats
    requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    report = core.backup_report(
        registry,
        target=store.url,
        snapshot=snap,
        batches=results,
        pruned=pruned,
        dry_run=dry_run,
        errors=errors,
        started=started,
        requests=requests,
    )
    add_notes(report, notes)
    publish_report(report, str(ctx.reports_dir()))
    ok = report.status in ("ok", "dry-run")
    report_job_metrics(ctx, "backup", registry, ok, {"items_failed": len(errors)})
    if not ok:
        log.error("backup of %s failed: %s", registry, "; ".join(errors[:3]))
    return report, errors


def _unconfigured(
    ctx: RunContext, names: list[str], e: RegkeeperError, *, dry_run: bool, notes: list[str]
) -> list:
    """A failed report per registry when the backup target cannot be opened, published."""
    reports = []
    for name in names:
        rep = core.backup_report(name, target="(not configured)", dry_run=dry_run, errors=[str(e)])
        add_notes(rep, notes)
        publish_report(rep, str(ctx.reports_dir()))
        reports.append(rep)
    return reports


@flow(
    name="backup",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def backup(
    registry: Annotated[
        Optional[str],
        Field(
            description="Registry name from mirrorRepositories (default: "
            "backup.registries, else every registry with a url)"
        ),
    ] = None,
    dry_run: Annotated[bool, Field(description="Scan and compare with the target; write nothing")] = False,
    keep: Annotated[
        Optional[int],
        Field(ge=1, le=100000, description="Snapshots to keep per registry (default: backup.keep)"),
    ] = None,
    include: Annotated[
        Optional[list[str]], Field(description="Repository globs to back up (default: every repository)")
    ] = None,
    exclude: Annotated[Optional[list[str]], Field(description="Repository globs to leave out")] = None,
    config_path: ConfigPath = None,
) -> dict:
    """Snapshot registry metadata: tags, manifests and indexes (exact bytes), image configs and
    layer descriptors (never layer data). Content-addressed objects are written once; the
    snapshot index is written last, so a failed run leaves no snapshot; then old snapshots are
    pruned to `keep`.

    Args:
        registry: registry name from mirrorRepositories (default: backup.registries, else every
            registry with a url).
        dry_run: scan and compare with the target; write and prune nothing.
        keep: snapshots to keep per registry (default: backup.keep).
        include: repository globs to back up (`**` crosses `/`; default: every repository).
        exclude: repository globs to leave out.
        config_path: the config file.
    """
    ctx = RunContext.load(config_path)
    try:
        notes = begin_run(ctx, "backup")
        names = core.backup_registries(ctx.config, registry, notes)
        try:
            bk = core.require_backup_config(ctx.config)
            store = core.open_target(bk.target, bk)
        except RegkeeperError as e:
            with_reports(e, _unconfigured(ctx, names, e, dry_run=dry_run, notes=notes))
            raise  # the same exception, carrying the reports
        reports, failures = {}, []
        for name in names:
            rep, errors = _backup_one(
                ctx,
                store,
                name,
                dry_run=dry_run,
                keep=keep or bk.keep,
                include=include,
                exclude=exclude,
                notes=notes,
            )
            reports[name] = rep
            if rep.status == "failed":
                failures.append(f"{name}: {'; '.join(errors[:2]) or 'failed'}")
        if failures:
            raise with_reports(
                RegkeeperError("backup failed: " + " | ".join(failures)), list(reports.values())
            )
        if len(reports) == 1:
            return next(iter(reports.values())).to_dict()
        return {
            "flow": "backup",
            "status": "dry-run" if dry_run else "ok",
            "summary": {n: r.summary.get("snapshot") for n, r in reports.items()},
            "registries": {n: r.to_dict() for n, r in reports.items()},
            "reports": [r.to_dict() for r in reports.values()],
            "files": {},
        }
    finally:
        ctx.close()


@flow(
    name="restore",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def restore(
    registry: Annotated[
        Optional[str],
        Field(description="Registry to restore into (default: the first in mirrorRepositories)"),
    ] = None,
    snapshot: Annotated[str, Field(min_length=1, description="Snapshot id, or 'latest'")] = "latest",
    repositories: Annotated[
        str, Field(min_length=1, description="Repository glob(s), comma-separated; ** crosses /")
    ] = "**",
    dry_run: Annotated[
        bool, Field(description="Report the diff and the plan; change nothing (default)")
    ] = True,
    blob_source: Annotated[
        Optional[str],
        Field(description="Registry to copy missing layer blobs from (default: backup.blobSource)"),
    ] = None,
    snapshot_registry: Annotated[
        Optional[str],
        Field(
            description="Whose snapshot to restore (default: the registry "
            "itself); set it to rebuild a registry from another one's backup"
        ),
    ] = None,
    restore_moved: Annotated[
        bool, Field(description="Move tags that now point elsewhere back to the snapshot's digest")
    ] = True,
    config_path: ConfigPath = None,
) -> dict:
    """Verified restore from a backup snapshot: diff (missing tags, moved tags, missing
    manifests, missing blobs), re-create manifests children first with their exact bytes, put
    the tags back, and check every restored tag resolves to the snapshot's digest. Missing
    blobs are mounted from another repository, configs come from the snapshot, layers from
    `blob_source`. Tags the snapshot does not know are left alone.

    Args:
        registry: the registry to restore into (default: the first in mirrorRepositories).
        snapshot: snapshot id, or "latest" (the newest complete one).
        repositories: repository glob(s), comma-separated (`**` crosses `/`).
        dry_run: report the diff and what would be done; change nothing (the default).
        blob_source: registry to copy missing layer blobs from (default: backup.blobSource).
        snapshot_registry: whose snapshots to use (default: the registry itself).
        restore_moved: move tags that now point elsewhere back to the snapshot's digest.
        config_path: the config file.
    """
    ctx = RunContext.load(config_path)
    started = utcnow()
    name, source_name, src_name = _restore_names(ctx, registry, snapshot_registry, blob_source)
    try:
        notes = begin_run(ctx, "restore")
        target, result, errors = _restore_into(
            ctx,
            name,
            source_name,
            snapshot,
            repositories,
            dry_run=dry_run,
            src_name=src_name,
            restore_moved=restore_moved,
        )
        report = core.restore_report(
            name,
            target=target,
            result=result,
            snapshot_registry=source_name,
            blob_source=src_name,
            errors=errors,
            started=started,
        )
        add_notes(report, notes)
        publish_report(report, str(ctx.reports_dir()))
        ok = report.status in ("ok", "dry-run")
        report_job_metrics(ctx, "restore", name, ok, {"items_failed": len(result.failed) if result else 0})
        if not ok:
            raise with_reports(_restore_failure(name, errors, result), [report])
        return report.to_dict()
    finally:
        ctx.close()


def _restore_names(
    ctx: RunContext, registry: Optional[str], snapshot_registry: Optional[str], blob_source: Optional[str]
) -> tuple[str, str, str | None]:
    """``(registry restored into, whose snapshot, blob source or None)``, names checked."""
    name = ctx.registry_name(registry)
    ctx.config.registry(name).refuse_proxy("restore")
    source_name = ctx.config.registry(snapshot_registry).name if snapshot_registry else name
    bk = ctx.config.backup
    src_name = blob_source or (bk.blob_source if bk else None)
    if src_name == name:
        src_name = None  # copying blobs from the registry into itself cannot help
    return name, source_name, src_name


def _restore_into(
    ctx: RunContext,
    name: str,
    source_name: str,
    snapshot: str,
    repositories: str,
    *,
    dry_run: bool,
    src_name: str | None,
    restore_moved: bool,
) -> tuple[str, core.RestoreResult | None, list[str]]:
    """Restore ``source_name``'s snapshot into registry ``name``, batch by batch: ``(target url,
    merged result or None, errors)``; what fails is returned as errors, for the report."""
    result = None
    errors: list[str] = []
    target = "(not configured)"
    try:
        bk = core.require_backup_config(ctx.config)
        store = core.open_target(bk.target, bk)
        target = store.url
        if src_name:
            ctx.config.registry(src_name)  # names the key when unknown
        snap = load_snapshot(store, source_name, snapshot)
        globs = [g.strip() for g in repositories.split(",") if g.strip()]
        repos = core.plan_restore(snap, globs)
        if not repos:
            raise core.BackupError(
                f"snapshot {snap.id} of {source_name} has no repository matching {repositories!r}"
            )
        todo = batches(repos, BATCH)
        futures = [
            restore_batch.submit(  # type: ignore[call-overload]  # prefect: quote(x) for x
                ctx,
                name,
                store,
                quote(snap),
                b,
                dry_run=dry_run,
                blob_source=src_name,
                restore_moved=restore_moved,
                label=batch_label(b),
            )
            for b in todo
        ]
        parts, errors = _collect(todo, futures, "restore batch")
        result = core.RestoreResult(snapshot=snap.id, registry=name, dry_run=dry_run)
        for p in parts:
            result.merge(p)
        result.rows.sort(key=lambda r: (r.repository, r.tag))
    except Exception as e:  # noqa: BLE001 - reported, then the run fails
        errors.append(str(e) if isinstance(e, RegkeeperError) else f"{type(e).__name__}: {e}")
    return target, result, errors


def _restore_failure(name: str, errors: list[str], result: "core.RestoreResult | None") -> RegkeeperError:
    """Why a restore failed, for its last line: the errors, else the first tag not restored."""
    if errors:
        return RegkeeperError(f"restore of {name} failed: {'; '.join(errors[:3])}")
    bad = result.failed if result is not None else []
    if not bad:
        return RegkeeperError(f"restore of {name} failed")
    return RegkeeperError(
        f"restore of {name}: {len(bad)} tag(s) could not be restored, e.g. "
        f"{bad[0].repository}:{bad[0].tag}: {bad[0].reason}"
    )
