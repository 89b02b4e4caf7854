"""The gc / expire run report: summary, notes and tables (decisions, repositories, manifests)
from the plan and from what the run did (deletes, reclaim, verify), the run status, and the
words for where ages come from (push-source labels).
"""

import re
from datetime import datetime

from ..models import Inventory
from ..oci.referrers import fallback_tag
from ..policy import Plan
from ..report import Report
from ..util import human_bytes
from .delete import DeleteResult
from .pipeline import KubeState
from .reclaim import ReclaimResult
from .referrers import COLUMNS as REFERRER_COLUMNS
from .referrers import referrer_rows, referrer_summary
from .verify import VerifyResult


def build_report(
    flow: str,
    registry: str,
    plan: Plan | None,
    *,
    inv: Inventory | None = None,
    kstate: KubeState | None = None,
    deleted: DeleteResult | None = None,
    reclaimed: ReclaimResult | None = None,
    verified: VerifyResult | None = None,
    dry_run: bool = False,
    refused: str | None = None,
    error: str | None = None,
    started: datetime | None = None,
    quarantine=None,
) -> Report:
    """``quarantine``: a ``quarantine.report.QuarantineRun`` when the config has the section;
    with the quarantine on, the plan's bytes are held until the release, not freed."""
    rep = Report(flow=flow, registry=registry, title=f"regkeeper {flow}")
    if started:
        rep.started = started
    if kstate is not None:
        for n in kstate.notes:
            rep.note(n)
    from ..quarantine.report import HELD_BYTES, hold_phrase, release_date

    hold = hold_phrase(quarantine)
    if plan is not None:
        _plan_section(rep, plan, dry_run or bool(refused), HELD_BYTES if hold else "bytes freed (preview)")
        if hold is not None and release_date(quarantine):
            rep.summary["held bytes freed at release (UTC)"] = release_date(quarantine)
    if inv is not None:
        if plan is not None:
            _referrer_section(rep, plan, inv, dry_run or bool(refused) or deleted is None)
        _scan_section(rep, inv)
    if deleted is not None:
        _delete_section(rep, deleted)
    if reclaimed is not None:
        _reclaim_section(rep, reclaimed, plan, dry_run, held=hold is not None)
    if verified is not None:
        _verify_section(rep, verified)
    rep.finish(_status(rep, deleted, reclaimed, verified, dry_run, refused, error))
    _headline(rep, plan, kstate, deleted, reclaimed, verified, refused=refused, error=error, hold=hold)
    _referrer_headline(rep)
    if quarantine is not None:
        from ..quarantine.report import quarantine_section

        quarantine_section(rep, quarantine, dry_run or bool(refused))
    return rep


def _referrer_headline(rep: Report) -> None:
    """Referrers that go with their subjects, and orphans, said after what happens to images."""
    s = rep.summary
    gone = s.get("referrers deleted", s.get("referrers to delete", 0))
    orphans = s.get("orphan referrers removed", s.get("orphan referrers to remove", 0))
    if gone:
        verb = "deleted" if "referrers deleted" in s else "to delete"
        extra = f", {_n(orphans, 'orphan')} among them (subject gone)" if orphans else ""
        rep.lead(f"Referrers {verb} with their subjects: {gone}{extra}; kept: {s.get('referrers kept', 0)}.")


# What a reader needs first, left to right: what happens to which tag and why, how old it is and
# what it frees; the digest after (the Prefect UI cuts a wide table off on the right; the
# markdown shows the first four). Deletes first.
DECISION_COLUMNS = [
    "action",
    "repository",
    "tag",
    "reason",
    "age_days",
    "bytes_freed",
    "digest",
    "rule",
    "in_use",
    "age_source",
    "overridden",
]
REPOSITORY_COLUMNS = [
    "repository",
    "deleted",
    "kept",
    "tags",
    "manifests_deleted",
    "bytes_freed",
    "in_use",
    "rule",
    "remove_repository",
]
MANIFEST_COLUMNS = [
    "action",
    "repository",
    "tags",
    "kind",
    "reason",
    "digest",
    "bytes_freed",
    "in_use",
    "rule",
]


def _deletes_first(rows: list[dict]) -> list[dict]:
    """Deletes first, then by repository and tag (a manifest row by its tags)."""
    return sorted(
        rows, key=lambda r: (r["action"] != "delete", r["repository"], str(r.get("tag", r.get("tags", ""))))
    )


def _plan_section(rep: Report, plan: Plan, preview: bool, bytes_key: str) -> None:
    """The plan's numbers and tables; ``preview``: nothing was deleted (dry run or refused);
    ``bytes_key``: what the plan's bytes are (freed, or held in the quarantine)."""
    s = plan.summary()
    rep.summary.update(
        {
            "tags scanned": s["tags_total"],
            "tags kept": s["tags_kept"],
            "tags to delete" if preview else "tags deleted": s["tags_deleted"],
            "in use (kept)": s["tags_in_use"],
            "expired but in use": s["expired_in_use"],
            "manifests to delete" if preview else "manifests deleted": s["manifests_deleted"],
            bytes_key: s["bytes_freed"],
            "repositories to remove": len(s["repositories_to_remove"]),
            "push time source": _push_source_label(s["push_time_source"]),
            "kubernetes protection": s["kube_protection"],
        }
    )
    if plan.cap_tripped:
        rep.summary["cap tripped"] = [str(c) for c in plan.cap_tripped]
    if plan.cap_exempt:
        rep.note(
            "per-repository cap not applied (ttl tier / repository removed whole; the "
            "registry-wide cap still applies): " + ", ".join(str(c) for c in plan.cap_exempt)
        )
    rep.add_table("decisions", _deletes_first(plan.tag_rows()), DECISION_COLUMNS, DECISION_COLUMNS[:4])
    repos = sorted(plan.repository_rows(), key=lambda r: (-r["deleted"], r["repository"]))
    rep.add_table("repositories", repos, REPOSITORY_COLUMNS)
    rep.add_table("manifests", _deletes_first(plan.manifest_rows()), MANIFEST_COLUMNS)
    for t in plan.expired_in_use():
        if len(rep.notes) < 200:
            rep.note(f"expired but in use: {t.repository}:{t.tag} ({'; '.join(t.in_use)})")
    if not plan.untagged_known:
        rep.note(
            "untagged manifests are invisible without storage access (configure storage "
            "for exact previews and untagged cleanup)"
        )


def _referrer_section(rep: Report, plan: Plan, inv: Inventory, preview: bool) -> None:
    """Referrers apart from images: how the registry keeps them (``referrers: api |
    tag-schema``), the counts, and one row per referrer under its subject."""
    rows = referrer_rows(plan, inv)
    rep.summary["referrers"] = inv.stats.get("referrers_mode", "unknown")
    rep.summary.update(referrer_summary(rows, preview))
    rep.add_table(
        "referrers", rows, REFERRER_COLUMNS, empty="No referrers (signatures, SBOMs, attestations) found."
    )


def _scan_section(rep: Report, inv: Inventory) -> None:
    errs = [(repo, e) for repo, r in inv.repositories.items() for e in r.errors]
    for repo, e in errs[:50]:
        rep.note(f"scan: {repo}: {e}")
    rep.summary["scan seconds"] = inv.stats.get("seconds")


def _delete_section(rep: Report, deleted: DeleteResult) -> None:
    rep.summary["deletes ok"] = len(deleted.deleted)
    rep.summary["already gone"] = len(deleted.already_gone)
    rep.summary["deletes failed"] = len(deleted.failed)
    if deleted.skipped:
        rep.summary["repositories changed since the scan (skipped)"] = len(deleted.skipped)
    if deleted.fallback_updates:
        rep.summary["fallback indexes repaired"] = len(deleted.fallback_updates)
    for repo, subject, new in deleted.fallback_updates[:100]:
        done = f"re-put as {new[:19]}…" if new else "emptied: deleted"
        rep.note(f"fallback index {repo}:{fallback_tag(subject)[:19]}…: {done}")
    for repo, why in deleted.skipped[:100]:
        rep.note(f"skipped {repo}: {why}")
    for repo, dg, why in deleted.failed[:100]:
        rep.note(f"delete failed: {repo}@{dg}: {why}")


def _reclaim_section(
    rep: Report, reclaimed: ReclaimResult, plan: Plan | None, dry_run: bool, *, held: bool = False
) -> None:
    """``held``: the quarantine is on, the plan's bytes are held (not reclaimable) until the release."""
    if reclaimed.mode != "none":
        rep.summary["reclaim"] = reclaimed.mode + (" (ran)" if reclaimed.ran else " (not run)")
        if reclaimed.bytes_freed is not None:
            rep.summary["bytes freed (measured)"] = reclaimed.bytes_freed
        if reclaimed.repositories_removed:
            rep.summary["repositories removed"] = reclaimed.repositories_removed
        if reclaimed.error:
            rep.note(f"reclaim: {reclaimed.error}")
    elif plan is not None and plan.bytes_freed and not held:
        rep.note(
            f"{human_bytes(plan.bytes_freed)} become reclaimable when the registry's "
            "garbage-collect runs (reclaim mode: none)"
        )
    if plan is not None and plan.repositories_to_remove and not dry_run:
        left = [r for r in plan.repositories_to_remove if r not in (reclaimed.repositories_removed or [])]
        if left:
            rep.note(
                "empty repositories left behind (no storage access or reclaim not run): " + ", ".join(left)
            )


def _verify_section(rep: Report, verified: VerifyResult) -> None:
    """Verify's numbers, one note per moved tag (information) and per problem, and the verify
    table (moved tags with the old and new digest, problems)."""
    rep.summary["verified tags"] = verified.tags_checked
    rep.summary["verified manifests"] = verified.manifests_checked
    rep.summary["verified blobs"] = verified.blobs_checked
    rep.summary["verify problems"] = len(verified.problems)
    rep.summary["kept tags moved during the run"] = len(verified.moved)
    for m in verified.moved_whole[:100]:
        rep.note(f"tag {m.repository}:{m.tag} {m.describe()}: not a problem")
    if len(verified.moved_whole) > 100:
        rep.note(f"… {len(verified.moved_whole) - 100} more moved tags in the verify table")
    for repo, tag, p in verified.problems[:100]:
        rep.note(f"verify: {repo}:{tag} {p}")
    rep.add_table(
        "verify",
        verified.rows(),
        VerifyResult.COLUMNS,
        empty="No kept tag moved or failed verification.",
    )


def _status(
    rep: Report,
    deleted: DeleteResult | None,
    reclaimed: ReclaimResult | None,
    verified: VerifyResult | None,
    dry_run: bool,
    refused: str | None,
    error: str | None,
) -> str:
    """The run status (noting why it was refused or failed)."""
    status = "ok"
    if dry_run:
        status = "dry-run"
    if refused:
        status = "refused"
        rep.note(refused)
    if error:
        status = "failed"
        rep.note(error)
    if deleted is not None and (deleted.failed or deleted.stopped):
        status = "failed"
    if verified is not None and verified.problems:
        status = "failed"
    if reclaimed is not None and reclaimed.error and reclaimed.mode != "none":
        status = "failed"
    return status


_PUSH_SOURCES = {
    "filesystem": "storage: filesystem (tag link mtime; image config created where absent)",
    "s3": "storage: s3 (tag link LastModified; image config created where absent)",
}


def _push_source_label(src: str | None) -> str:
    """What ages are measured from, in words (the per-tag ``age_source`` column is exact)."""
    return _PUSH_SOURCES.get(
        src or "none",
        f"storage: {src}" if src and src != "none" else "image config created (no storage access)",
    )


def _n(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _headline(rep: Report, plan, kstate, deleted, reclaimed, verified, *, refused, error, hold=None) -> None:
    """What a reader must know first: what was deleted (or would be), refusals and why,
    failures; the figures, notes and tables follow."""
    if error:
        rep.lead(f"Failed: {error}")
    if refused:
        rep.lead(f"Refused, nothing was deleted: {refused}")
    if plan is not None:
        _plan_headline(rep, plan, deleted, hold)
    if deleted is not None:
        if deleted.failed:
            first = "; ".join(f"{r}@{d}: {why}" for r, d, why in deleted.failed[:3])
            rep.lead(f"{_n(len(deleted.failed), 'delete')} FAILED: {first}")
        if deleted.skipped:
            names = ", ".join(r for r, _ in deleted.skipped[:5])
            rep.lead(
                f"{_n(len(deleted.skipped), 'repository', 'repositories')} left alone (a tag "
                f"changed since the scan): {names}"
            )
    if reclaimed is not None and reclaimed.mode != "none":
        if reclaimed.error:
            rep.lead(f"Reclaim failed: {reclaimed.error}")
        elif reclaimed.bytes_freed is not None:
            rep.lead(f"Storage freed by garbage-collect: {human_bytes(reclaimed.bytes_freed)} (measured).")
    elif deleted is not None and deleted.deleted and plan is not None and plan.bytes_freed and hold is None:
        rep.lead(
            f"{human_bytes(plan.bytes_freed)} become free when the registry's garbage-collect runs "
            "(reclaim mode: none)."
        )
    if plan is not None and plan.repositories_to_remove and deleted is not None:
        removed = list(reclaimed.repositories_removed) if reclaimed is not None else []
        left = [r for r in plan.repositories_to_remove if r not in removed]
        if removed:
            rep.lead(f"Removed whole: {', '.join(removed[:5])}.")
        if left:
            rep.lead(
                f"Left behind empty (still listed in _catalog; removing them needs storage access "
                f"and a reclaim mode): {', '.join(left[:5])}."
            )
    if verified is not None and verified.problems:
        r, t, p = verified.problems[0]
        rep.lead(f"Verify: {_n(len(verified.problems), 'problem')} with kept tags, e.g. {r}:{t} {p}")


def _plan_headline(rep: Report, plan: Plan, deleted: DeleteResult | None, hold: str | None = None) -> None:
    tags, mans = plan.deleted_tags(), plan.deleted_manifests()
    repos = len({t.repository for t in tags} | {m.repository for m in mans})
    what = (
        f"{_n(len(tags), 'tag')} ({_n(len(mans), 'manifest')}) in {_n(repos, 'repository', 'repositories')}"
    )
    exact = "exact" if plan.untagged_known else "an upper bound: no storage access"
    # with the quarantine on nothing is freed now: the bytes are held until the release
    freeing = f"freeing {human_bytes(plan.bytes_freed)} ({exact})"
    if hold is not None:
        freeing = f"holding {human_bytes(plan.bytes_freed)} in quarantine ({hold}; {exact})"
    if not mans:
        rep.lead(f"Nothing to delete: all {_n(len(plan.tags), 'tag')} kept.")
    elif deleted is not None:
        rep.lead(f"Deleted {len(deleted.deleted)} of {len(mans)} planned manifests ({what}).")
    elif rep.status == "dry-run":
        rep.lead(f"Would delete {what}, {freeing}.")
    else:
        rep.lead(f"The plan (not carried out) deletes {what}, {freeing.removeprefix('freeing ')}.")
    if plan.repositories_to_remove and deleted is None:
        n = _n(len(plan.repositories_to_remove), "repository", "repositories")
        rep.lead(f"Would remove {n} whole: " + ", ".join(plan.repositories_to_remove[:5]))
    _held_back_headline(rep, plan)
    in_use = sum(1 for t in plan.tags if t.action == "keep" and t.in_use)
    if in_use:
        expired = len(plan.expired_in_use())
        rep.lead(
            f"Kept because a workload uses them: {_n(in_use, 'tag')}"
            + (f" ({expired} expired but in use)." if expired else ".")
        )
    if not plan.kube_protection:
        rep.lead("No Kubernetes in-use protection: images that workloads use are NOT protected.")
    if plan.cap_tripped:
        rep.lead("Blast-radius cap tripped: " + "; ".join(str(c) for c in plan.cap_tripped))


# the fail-safe's reasons (policy/pulled.py, pulls/history.py): kept because pull history cannot tell
_HISTORY_SHORT = re.compile(r"pull history (?:shorter than the window|has a gap in the window|unavailable).*")


def _held_back_headline(rep: Report, plan: Plan) -> None:
    """Tags kept only because the pull history does not cover a ``pulledWithin`` window: said in
    the headline, as it is often the whole reason nothing was deleted."""
    held = [t for t in plan.tags if t.action == "keep" and _HISTORY_SHORT.search(t.reason)]
    if held:
        first = _HISTORY_SHORT.search(held[0].reason)
        why = first.group(0) if first else held[0].reason
        rep.lead(
            f"Held back by the pulledWithin fail-safe: {_n(len(held), 'tag')} the rules would otherwise "
            f"delete {'is' if len(held) == 1 else 'are'} kept: {why}. They become eligible once the pull "
            "history covers the whole window."
        )
