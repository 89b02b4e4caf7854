"""What backup and restore report: the run Reports and the rows behind them.

``backup_report`` (one row per repository), ``restore_report`` (one row per snapshot tag, with
the action taken), ``repository_rows`` and ``snapshot_rows``/``list_snapshots_cli`` (the
``regkeeper snapshots list`` command: every index on the target, ignored ones with the reason).
"""

from collections.abc import Iterable
from datetime import datetime

from ..util import human_bytes
from .batch import BatchResult
from .config import require_backup_config
from .restore_result import RestoreResult
from .retention import PruneResult
from .snapshot import Snapshot, scan_snapshots
from .store import ObjectStore, open_target


def repository_rows(snap_or_batches) -> list[dict]:
    """One row per repository (the backup report's main table), from a Snapshot or from the
    BatchResults of a run that wrote no index (dry run, failure)."""
    if isinstance(snap_or_batches, Snapshot):
        repos, mans = snap_or_batches.repositories, snap_or_batches.manifests
    else:
        repos, mans = {}, {}
        for b in snap_or_batches:
            repos.update(b.repositories)
            mans.update(b.manifests)
    rows = []
    for name, rec in sorted(repos.items()):
        ds = [d for d in rec.get("manifests") or [] if d in mans]
        layers = {layer["digest"]: layer["size"] for d in ds for layer in mans[d].get("layers", [])}
        rows.append(
            {
                "repository": name,
                "tags": len(rec.get("tags") or {}),
                "manifests": len(ds),
                "indexes": sum(1 for d in ds if mans[d].get("kind") == "index"),
                "configs": len({mans[d]["config"]["digest"] for d in ds if mans[d].get("config")}),
                "layers": len(layers),
                "layer_bytes": sum(layers.values()),
                "referrers": sum(len(v) for v in (rec.get("referrers") or {}).values()),
                "errors": "; ".join(rec.get("errors") or []),
            }
        )
    return rows


REFERRER_COLUMNS = ["repository", "subject", "referrer", "artifact_type", "found_by"]


def snapshot_referrer_rows(snap_or_batches) -> list[dict]:
    """One row per referrer a backup recorded, by subject: artifact type and how it was found
    (api, tag-schema, cosign-tag)."""
    if isinstance(snap_or_batches, Snapshot):
        repos = snap_or_batches.repositories
    else:
        repos = {k: v for b in snap_or_batches for k, v in b.repositories.items()}
    return [
        {
            "repository": name,
            "subject": subject,
            "referrer": e["digest"],
            "artifact_type": e.get("artifact_type") or "",
            "found_by": e.get("found_by") or "",
        }
        for name, rec in sorted(repos.items())
        for subject, entries in sorted((rec.get("referrers") or {}).items())
        for e in entries
    ]


def backup_report(
    registry: str,
    *,
    target: str,
    snapshot: Snapshot | None = None,
    batches: Iterable[BatchResult] = (),
    pruned: PruneResult | None = None,
    dry_run: bool = False,
    errors: Iterable[str] = (),
    started: datetime | None = None,
    requests: dict | None = None,
):
    """The backup run's Report (main table: one row per repository)."""
    from ..report import Report

    batches = list(batches)
    rep = Report(flow="backup", registry=registry, title="Metadata backup")
    if started:
        rep.started = started
    written = {k: v for b in batches for k, v in b.written.items()}
    would = sorted({k for b in batches for k in b.would_write})
    rep.summary["target"] = target
    rep.summary["snapshot"] = (
        snapshot.id if snapshot else ("(dry run: none written)" if dry_run else "(none: run failed)")
    )
    rows = repository_rows(snapshot if snapshot else batches)
    rep.summary["repositories"] = len(rows)
    rep.summary["tags"] = sum(r["tags"] for r in rows)
    if snapshot:
        c = snapshot.counts
        rep.summary["manifests"] = c.get("manifests", 0)
        rep.summary["configs"] = c.get("configs", 0)
        rep.summary["layer descriptors"] = c.get("layers", 0)
        rep.summary["layer bytes (described, not copied)"] = c.get("layer_bytes", 0)
        rep.summary["objects in snapshot"] = c.get("objects", 0)
    if dry_run:
        rep.summary["objects to write"] = len(would)
    else:
        rep.summary["objects written"] = len(written)
        rep.summary["bytes written"] = sum(written.values())
    _pruned_part(rep, pruned)
    if requests:
        rep.summary["registry requests"] = ", ".join(f"{k} {v}" for k, v in sorted(requests.items()))
    rep.add_table("repositories", rows, REPOSITORY_COLUMNS)
    _referrers_part(rep, snapshot, batches, rows)
    problems = [e for b in batches for e in b.errors]
    if problems:
        rep.add_table("problems", [{"problem": p} for p in problems])
        rep.note(f"{len(problems)} item(s) left out of the snapshot: see the problems table")
    if pruned is not None and pruned.deleted_snapshots:
        rep.add_table("pruned snapshots", [{"snapshot": k} for k in pruned.deleted_snapshots])
    errs = list(errors)
    for e in errs:
        rep.note(e)
    if errs and snapshot is None and not dry_run:
        rep.note(
            "no snapshot index was written: this run is not listed and cannot be restored; "
            "objects it uploaded are reused by the next run"
        )
    if errs:
        rep.finish("failed")
    else:
        rep.finish("dry-run" if dry_run else "ok")
    _backup_headline(rep, snapshot, would, written, pruned, problems, errs)
    return rep


def _pruned_part(rep, pruned: PruneResult | None) -> None:
    """What the retention prune did (or would do)."""
    if pruned is None:
        return
    rep.summary["snapshots kept"] = len(pruned.kept)
    dry = " (dry run)" if pruned.dry_run else ""
    rep.summary["snapshots pruned" + dry] = len(pruned.deleted_snapshots)
    rep.summary["objects pruned" + dry] = pruned.deleted_objects
    rep.summary["bytes pruned" + dry] = pruned.deleted_bytes
    if pruned.sweep_skipped:
        rep.note(f"prune: {pruned.sweep_skipped}")
    for key, why in pruned.invalid:
        rep.note(f"ignored on the target (not a complete snapshot): {key}: {why}")


REPOSITORY_COLUMNS = [
    "repository",
    "tags",
    "manifests",
    "referrers",
    "indexes",
    "configs",
    "layers",
    "layer_bytes",
    "errors",
]


def _referrers_part(rep, snapshot: Snapshot | None, batches: list[BatchResult], rows: list[dict]) -> None:
    """The referrers a backup recorded: counted apart, the registry's mode, one row each."""
    rep.summary["referrers"] = sum(r["referrers"] for r in rows)
    mode = (snapshot.data.get("referrers_mode") if snapshot else None) or next(
        (b.referrers_mode for b in batches if b.referrers_mode), None
    )
    rep.summary["referrers mode"] = mode or "not asked"
    rep.add_table("referrers", snapshot_referrer_rows(snapshot if snapshot else batches), REFERRER_COLUMNS)


def _backup_headline(rep, snapshot, would, written, pruned, problems, errs) -> None:
    """What a reader must know first: the snapshot written (or not), what was pruned, failures."""
    for e in errs[:3]:
        rep.lead(f"Failed: {e}")
    s = rep.summary
    if snapshot is not None:
        rep.lead(
            f"Snapshot {snapshot.id} written: {s['repositories']} repositories, {s['tags']} tags; "
            f"{len(written)} new object(s), {human_bytes(sum(written.values()))}."
        )
    elif rep.status == "dry-run":
        rep.lead(
            f"Dry run: no snapshot written; a run would write {len(would)} new object(s) for "
            f"{s['repositories']} repositories, {s['tags']} tags."
        )
    else:
        rep.lead("No snapshot written: this run cannot be restored from.")
    if pruned is not None and pruned.deleted_snapshots:
        verb = "Would prune" if pruned.dry_run else "Pruned"
        rep.lead(
            f"{verb} {len(pruned.deleted_snapshots)} old snapshot(s) "
            f"({human_bytes(pruned.deleted_bytes)}); {len(pruned.kept)} kept."
        )
    if problems:
        rep.lead(f"{len(problems)} item(s) left out of the snapshot, e.g. {problems[0]}")


# action first (what happens to the tag), the digest after the reason: the Prefect UI cuts a wide
# table off on the right. Rows that need attention (cannot restore, would restore) come first.
RESTORE_COLUMNS = [
    "action",
    "repository",
    "tag",
    "reason",
    "digest",
    "state",
    "current",
    "missing_manifests",
    "missing_blobs",
]


def restore_report(
    registry: str,
    *,
    target: str,
    result: RestoreResult | None,
    snapshot_registry: str | None = None,
    blob_source: str | None = None,
    errors: Iterable[str] = (),
    started: datetime | None = None,
):
    """The restore run's Report (main table: one row per snapshot tag, with the action taken)."""
    from ..report import Report

    rep = Report(flow="restore", registry=registry, title="Restore from backup")
    if started:
        rep.started = started
    rep.summary["target"] = target
    if snapshot_registry and snapshot_registry != registry:
        rep.summary["snapshot of registry"] = snapshot_registry
    rep.summary["blobSource"] = blob_source or "(none)"
    if result is not None:
        rep.summary.update(result.summary())
        rows = sorted(result.rows, key=lambda r: (_RESTORE_ORDER.get(r.action, 1), r.repository, r.tag))
        rep.add_table("tags", [r.to_dict() for r in rows], RESTORE_COLUMNS, RESTORE_COLUMNS[:4])
        rep.add_table(
            "referrers",
            result.referrers,
            ["action", "repository", "subject", "referrer", "artifact_type", "found_by", "reason"],
        )
        bad = result.failed
        if bad:
            rep.note(
                f"{len(bad)} tag(s) {'cannot be' if result.dry_run else 'could not be'} "
                f"restored, e.g. {bad[0].repository}:{bad[0].tag}: {bad[0].reason}"
            )
    errs = list(errors)
    for e in errs:
        rep.note(e)
    if errs:
        rep.finish("failed")
    elif result is not None and result.dry_run:
        rep.finish("dry-run")
    elif result is not None and result.failed:
        rep.finish("failed")
    else:
        rep.finish("ok")
    _restore_headline(rep, result, errs)
    return rep


_RESTORE_ORDER = {"cannot restore": 0, "would restore": 0, "would move back": 0, "already present": 2}


def _restore_headline(rep, result: RestoreResult | None, errs: list[str]) -> None:
    for e in errs[:3]:
        rep.lead(f"Failed: {e}")
    if result is None:
        return
    s = result.summary()
    if result.dry_run:
        rep.lead(
            f"Dry run: would restore {s['would restore']} and move back {s['would move back']} of "
            f"{s['tags in snapshot']} tag(s) from snapshot {result.snapshot}; {s['already present']} "
            "already present. Run with dry_run false (CLI: --apply) to restore."
        )
    else:
        rep.lead(
            f"Restored {s['restored']} and moved back {s['moved back']} of {s['tags in snapshot']} "
            f"tag(s) from snapshot {result.snapshot}; {s['already present']} already present."
        )
    n = s["referrers in snapshot"]
    if n:
        verb = "would re-create" if result.dry_run else "re-created"
        done = s.get("referrers would restore", s.get("referrers restored", 0))
        rep.lead(
            f"Referrers: {n} in the snapshot ({s['untagged referrers (api)']} untagged, {verb} "
            f"{done}, {s['referrers already present']} present; the others travel as tags); "
            f"registry referrers mode: {s['referrers mode']}."
        )
    bad = result.failed
    if bad:
        rep.lead(
            f"{len(bad)} tag(s) {'cannot be' if result.dry_run else 'could not be'} restored, e.g. "
            f"{bad[0].repository}:{bad[0].tag}: {bad[0].reason}"
        )


def snapshot_rows(store: ObjectStore, registry: str | None = None) -> list[dict]:
    rows = []
    for e in scan_snapshots(store, registry):
        s = e.snapshot
        c = s.counts if s else {}
        rows.append(
            {
                "registry": e.registry,
                "snapshot": e.id,
                "status": "complete" if s else f"ignored: {e.reason}",
                "finished": s.created if s else "",
                "repositories": c.get("repositories", ""),
                "tags": c.get("tags", ""),
                "manifests": c.get("manifests", ""),
                "configs": c.get("configs", ""),
                "layers": c.get("layers", ""),
                "layer_bytes": c.get("layer_bytes", ""),
                "objects": c.get("objects", ""),
                "objects_written": c.get("objects_written", ""),
            }
        )
    return rows


def list_snapshots_cli(cfg, registry: str | None = None) -> list[dict]:
    """Rows for ``regkeeper snapshots list``: every index on the configured target (newest
    last), including ignored ones with the reason."""
    bk = require_backup_config(cfg)
    if registry is not None:
        registry = cfg.registry(registry).name
    store = open_target(bk.target, bk)
    return snapshot_rows(store, registry)
