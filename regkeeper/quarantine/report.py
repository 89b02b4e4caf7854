"""What the quarantine reports, through the one report writer: the undo run's Report (one row
per tag or untagged manifest, with its outcome; moved tags said first), and the rows of
``regkeeper quarantine list``."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..report import Report
from ..util import human_bytes
from .undo import UndoResult


@dataclass
class QuarantineRun:
    """What a gc / expire run did with the quarantine, for its report."""

    run: str
    plan: Any = None  # release.ReleasePlan or None
    held: Any = None  # the run's DeleteResult (held, held_bytes)
    released: Any = None  # the release's DeleteResult
    back: UndoResult | None = None  # in-use entries released back


UNDO_COLUMNS = ["repository", "tag", "digest", "outcome"]


def undo_report(
    registry: str, run: str, result: UndoResult | None, error: str | None, started: datetime
) -> Report:
    rep = Report(flow="undo", registry=registry, title="Undo from the quarantine", started=started)
    rep.summary["run undone"] = run
    if result is not None:
        verb = "would be restored" if result.dry_run else "restored and verified"
        rep.lead(f"{len(result.restored)} tag(s) and {len(result.untagged)} untagged manifest(s) {verb}")
        if result.moved:
            r, t, _, now = result.moved[0]
            rep.lead(
                f"{len(result.moved)} tag(s) NOT restored: pushed to another image since the delete, "
                f"e.g. {r}:{t} now points to {now}"
            )
        rep.summary.update(
            {
                "tags restored" if not result.dry_run else "tags to restore": len(result.restored),
                "untagged manifests (children, referrers)": len(result.untagged),
                "tags moved since the delete (not overwritten)": len(result.moved),
                "failures": len(result.failed),
                "objects verified (200)": result.verified,
                "manifests that left the quarantine": result.left_quarantine,
            }
        )
        rep.add_table("undo", result.rows(), UNDO_COLUMNS)
        for r, what, why in result.failed[:20]:
            rep.note(f"{r} {what}: {why}")
    if error:
        rep.note(error)
        return rep.finish("failed")
    if result is not None and result.failed:
        return rep.finish("failed")
    return rep.finish("dry-run" if result is None or result.dry_run else "ok")


def list_lines(registry: str, rows: list[dict]) -> list[str]:
    """``regkeeper quarantine list``: one line per run."""
    if not rows:
        return [f"{registry}: the quarantine holds nothing"]
    out = [
        f"{'run':<38} {'held since':<20} {'release at':<20} {'tags':>5} {'manifests':>9} {'bytes':>10}  repositories"
    ]
    for r in rows:
        out.append(
            f"{r['run']:<38} {r['held_since']:%Y-%m-%d %H:%M}{'':<4} {r['release_at']:%Y-%m-%d %H:%M}{'':<4} "
            f"{r['tags']:>5} {r['manifests']:>9} {human_bytes(r['bytes_held']):>10}  {r['repositories']}"
        )
    return out


def quarantine_section(rep: Report, q, dry_run: bool) -> None:
    """The gc / expire report's quarantine part: what this run held (and until when), what the
    quarantine holds, what the window released now (bytes freed, preview) and what was released
    back because a workload uses it. ``q``: a :class:`QuarantineRun`."""
    s = rep.summary
    rp = q.plan
    if q.held is not None and q.held.held:
        until = rp.now + rp.window if rp is not None else None
        s["deletes held in quarantine (undoable)"] = len(q.held.held)
        s["bytes held by this run"] = q.held.held_bytes
        s["undo this run"] = f"regkeeper undo --run {q.run} --apply"
        rep.lead(
            f"{len(q.held.held)} deleted manifest(s) held in quarantine"
            + (f" until {until:%Y-%m-%d %H:%M} UTC" if until else "")
            + f": undo with `regkeeper undo --run {q.run} --apply`; their bytes are reclaimed only after that"
        )
    if rp is None:
        return
    s["bytes held in quarantine (before this run)"] = rp.bytes_held
    s["quarantine entries released" if not dry_run else "quarantine entries to release"] = len(rp.due)
    s["bytes the release frees (preview)"] = rp.bytes_freed
    later = [r.release_at(rp.window) for r in rp.held if r not in rp.due]
    if later:
        s["next quarantine release"] = min(later)
    if rp.due:
        rep.lead(
            f"{len(rp.due)} quarantine record(s) past the {format_window(rp.window)} window "
            f"{'released' if not dry_run else 'to release'} for good: {human_bytes(rp.bytes_freed)} freed by the reclaim"
        )
    for r, d, tags, used in rp.back:
        rep.note(f"released BACK (in use by {used}), not deleted: {r.repository}:{tags or d[:19]}")
    if q.back is not None:
        s["released back (in use)"] = len(q.back.restored) + len(q.back.untagged)
    if q.released is not None:
        s["quarantine deletes ok"] = len(q.released.deleted)
        s["quarantine deletes failed"] = len(q.released.failed)
    rep.add_table("quarantine", rp.rows())


def format_window(td) -> str:
    from ..config.units import format_duration

    return format_duration(td)
