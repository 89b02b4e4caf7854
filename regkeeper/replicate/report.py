"""The run report of one (rule, target): the one-line summary printed at the end
(``summary_line``) and the full report (``build_report``: per-repository table, failed items,
the plan's decisions, notes such as refused deletes or tags that vanished mid-run).
"""

from ..config import ReplicationRule
from ..quarantine.report import undo_command
from ..util import human_bytes
from .result import ReplicationResult


def summary_line(result: ReplicationResult) -> str:
    t = result.totals()
    return (
        f"{result.plan.rule} -> {result.plan.target}: {t['copied']} copied, {t['skipped']} in sync, "
        f"{t['failed']} failed, {t['deleted']} deleted, {t['referrers_copied']} referrers copied, "
        f"lag {t['lag']}, uploaded "
        f"{human_bytes(t['bytes_uploaded'])}, mounted {human_bytes(t['bytes_mounted'])} "
        f"in {t['seconds']}s"
    )


def build_report(
    result: "ReplicationResult | None",
    *,
    rule: ReplicationRule,
    source: str,
    target: str,
    label: str | None = None,
    error: str | None = None,
    started=None,
):
    """The run report for one (rule, target): per-repository counts (the main table, also the
    ``replication-<target>`` artifact), failed items, and the plan's decisions."""
    from ..report import Report

    rep = Report(
        flow="replicate",
        registry=label or target,
        key=f"replication-{target}",
        title=f"replicate {rule.rule_name}: {source} → {target}",
    )
    if started is not None:
        rep.started = started
    rep.summary["rule"] = rule.rule_name
    rep.summary["source"] = source
    rep.summary["target"] = target
    if rule.prefix:
        rep.summary["prefix"] = rule.prefix
    if result is None:
        rep.note(error or "the run failed before planning")
        rep.lead(f"Failed before planning: {error or 'see the notes'}")
        rep.add_table("per repository", [], columns=_REPO_COLUMNS)
        return rep.finish("failed")
    plan = result.plan
    _summarize(rep, result, rule)
    _note(rep, result, rule, error)
    rows = [r.row() for r in result.repositories]
    rep.add_table(
        "per repository",
        rows,
        columns=_REPO_COLUMNS,
        brief=["repository", "target_repository", *_REPO_COLUMNS[2:5], "lag"],
    )
    rep.add_table(
        "failed items",
        [{"repository": a, "tag": b, "reason": c} for a, b, c in result.failed_items],
        columns=["repository", "tag", "reason"],
    )
    if rule.delete_extraneous and not result.dry_run:
        rep.add_table(
            "deletes",
            result.delete_rows(),
            columns=["repository", "target_repository", "tag", "digest", "outcome", "reason"],
        )
    rep.add_table("referrers", referrer_rows(result), columns=_REFERRER_COLUMNS)
    rep.add_table(
        "plan",
        sorted(plan.rows(), key=lambda r: (r["action"] == "keep", r["repository"], r["tag"])),
        columns=["action", "repository", "tag", "reason", "target_repository", "digest", "target_digest"],
    )
    status = result.status
    if error and status in ("ok", "dry-run"):
        status = "failed"
    rep.finish(status)
    _headline(rep, result, rule, target)
    return rep


def _headline(rep, result: ReplicationResult, rule: ReplicationRule, target: str) -> None:
    """What a reader must know first: copied (or would copy), failures, deletes, the lag left."""
    t = result.totals()
    plan = result.plan
    if result.dry_run:
        more = f" and {plan.referrers} untagged referrer(s)" if plan.referrers else ""
        rep.lead(f"Would copy {plan.to_copy} tag(s){more} to {target}; {plan.in_sync} already in sync.")
        if rule.delete_extraneous and plan.extraneous:
            rep.lead(f"Would delete {plan.extraneous} tag(s) on {target} that the source no longer has.")
    else:
        rep.lead(
            f"Copied {t['copied']} of {plan.to_copy} tag(s) to {target} "
            f"({human_bytes(t['bytes_uploaded'])} uploaded); {t['skipped']} already in sync; "
            f"lag now {t['lag']} tag(s)."
        )
        if t["referrers_copied"] or t["referrers_failed"]:
            rep.lead(
                f"Referrers copied with their subjects: {t['referrers_copied']} "
                f"({t['referrers_failed']} failed); source {_mode(plan.source_referrers_mode)}, "
                f"target {_mode(plan.target_referrers_mode)}."
            )
        if rule.delete_extraneous and (t["deleted"] or plan.extraneous):
            rep.lead(f"Deleted {t['deleted']} of {plan.extraneous} extraneous tag(s) on {target}.")
        if result.held:
            undo = undo_command(result.undo_run or "", target, apply=False)
            rep.lead(
                f"{result.held} deleted manifest(s) ({human_bytes(result.held_bytes)}) held in {target}'s "
                f"quarantine, undoable until its window ends: `{undo}` says what would come back, "
                "add `--apply` to restore."
            )
    failed = result.failed_items
    if failed:
        first = "; ".join(f"{a}:{b}: {c}" for a, b, c in failed[:3])
        rep.lead(f"{len(failed)} item(s) FAILED: {first}")
    if result.deletes_refused:
        rep.lead(f"Deletes refused: {result.deletes_refused}")
    if result.deletes_stopped:
        rep.lead(f"Deletes stopped: {result.deletes_stopped}")


def _summarize(rep, result: ReplicationResult, rule: ReplicationRule) -> None:
    """The report's summary: the plan against what was copied, deleted, uploaded and mounted."""
    t = result.totals()
    plan = result.plan
    rep.summary["dry run"] = result.dry_run
    rep.summary["repositories"] = t["repositories"]
    rep.summary["source tags in scope"] = plan.to_copy + plan.in_sync
    rep.summary["to copy (plan)"] = plan.to_copy
    rep.summary["copied"] = t["copied"]
    rep.summary["in sync (skipped)"] = t["skipped"]
    rep.summary["failed"] = t["failed"]
    rep.summary["lag before (tags)"] = t["lag_before"]
    rep.summary["lag (tags)"] = t["lag"]
    if rule.delete_extraneous:
        rep.summary["extraneous (plan)"] = plan.extraneous
        rep.summary["deleted"] = t["deleted"]
        rep.summary["already gone"] = t["already_gone"]
        rep.summary["delete skipped (changed since plan)"] = t["delete_skipped"]
        if result.held:
            rep.summary["deletes held in quarantine (undoable)"] = result.held
            rep.summary["bytes held by this run"] = result.held_bytes
            rep.summary["undo this run"] = undo_command(result.undo_run or "", rep.summary["target"])
    rep.summary["referrers mode (source)"] = _mode(plan.source_referrers_mode)
    rep.summary["referrers mode (target)"] = _mode(plan.target_referrers_mode)
    rep.summary["referrers to copy (plan, untagged)"] = plan.referrers
    rep.summary["referrers copied"] = t["referrers_copied"]
    rep.summary["referrers in sync"] = t["referrers_in_sync"]
    rep.summary["referrers failed"] = t["referrers_failed"]
    if rule.delete_extraneous:
        rep.summary["referrers deleted (with their subject)"] = t["referrers_deleted"]
    rep.summary["bytes uploaded"] = t["bytes_uploaded"]
    rep.summary["bytes mounted"] = t["bytes_mounted"]
    rep.summary["blobs uploaded"] = t["blobs_uploaded"]
    rep.summary["blobs mounted"] = t["blobs_mounted"]
    rep.summary["seconds"] = result.seconds
    if result.target_requests:
        rep.summary["target requests"] = ", ".join(
            f"{k} {v}" for k, v in sorted(result.target_requests.items())
        )


def _note(rep, result: ReplicationResult, rule: ReplicationRule, error: str | None) -> None:
    """The report's notes: refused or stopped deletes, plan errors, tags that vanished mid-run,
    failed items (a failed run's last line quotes them)."""
    plan = result.plan
    if result.deletes_refused:
        rep.note(f"deletes refused: {result.deletes_refused}")
    if result.deletes_stopped:
        rep.note(f"deletes stopped: {result.deletes_stopped}")
    for r in result.repositories:
        if r.delete_skipped:
            rep.note(f"{r.target_repo}: deletes skipped: {r.delete_skipped[0][1]}")
    for e in plan.errors:
        rep.note(e)
    for p in plan.repositories:
        if rule.delete_extraneous and p.no_deletes:
            rep.note(f"{p.target_repo}: {p.no_deletes}")
    if error:
        rep.note(error)
    vanished = [(r.source_repo, t_) for r in result.repositories for t_ in r.vanished]
    if vanished:
        rep.note(
            f"{len(vanished)} tag(s) vanished from the source during the run (not copied): "
            + ", ".join(f"{a}:{b}" for a, b in vanished[:10])
        )
    failed = result.failed_items
    if failed:  # named here too: a failed run's last line quotes the notes
        more = f" (and {len(failed) - 3} more: see the failed items table)" if len(failed) > 3 else ""
        rep.note(
            f"{len(failed)} item(s) failed: " + "; ".join(f"{a}:{b}: {c}" for a, b, c in failed[:3]) + more
        )


def _mode(mode: str | None) -> str:
    return {"api": "referrers API", "tag-schema": "sha256-<hex> tag schema (no referrers API)"}.get(
        mode or "", "not asked"
    )


def referrer_rows(result: ReplicationResult) -> list[dict]:
    """One row per referrer carried, failed or deleted: by subject, with its artifact type and
    how it was found (api, tag-schema, cosign-tag)."""
    rows = []
    for r in result.repositories:
        base = {"repository": r.source_repo, "target_repository": r.target_repo}
        for subject, digest, atype, found_by in r.referrers_copied:
            rows.append(
                dict(
                    base,
                    subject=subject,
                    referrer=digest,
                    artifact_type=atype,
                    found_by=found_by,
                    outcome="copied",
                )
            )
        for digest, why in r.referrers_failed:
            rows.append(
                dict(
                    base, subject="", referrer=digest, artifact_type="", found_by="", outcome=f"failed: {why}"
                )
            )
        for subject, digest in r.referrers_deleted:
            rows.append(
                dict(
                    base,
                    subject=subject,
                    referrer=digest,
                    artifact_type="",
                    found_by="",
                    outcome="deleted with its subject",
                )
            )
    return sorted(rows, key=lambda x: (x["repository"], x["subject"], x["referrer"]))


_REFERRER_COLUMNS = [
    "repository",
    "subject",
    "referrer",
    "artifact_type",
    "found_by",
    "outcome",
    "target_repository",
]

_REPO_COLUMNS = [
    "repository",
    "target_repository",
    "copied",
    "skipped",
    "failed",
    "deleted",
    "already_gone",
    "delete_skipped",
    "delete_failed",
    "lag_before",
    "lag",
    "bytes_uploaded",
    "bytes_mounted",
    "blobs_uploaded",
    "blobs_mounted",
    "blobs_present",
    "retries",
    "referrers_copied",
    "referrers_in_sync",
    "referrers_failed",
    "errors",
]
