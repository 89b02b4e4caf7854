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


def undo_command(run: str, registry: str | None = None, apply: bool = True) -> str:
    """The one wording of the command that undoes ``run`` (``registry``: named when it is not
    the run's default, e.g. a replication target); ``apply``: the command that restores."""
    where = f" --registry {registry}" if registry else ""
    return f"regkeeper undo{where} --run {run}" + (" --apply" if apply else "")


# the gc / expire plan's bytes with the quarantine on: held, not freed, until the release (the key
# is the same whatever the date, for tools; the date is said next to it and in the headline)
HELD_BYTES = "bytes to hold in quarantine (freed at release)"


def hold_phrase(q: QuarantineRun | None) -> str | None:
    """With the quarantine on, when a gc / expire plan's bytes are freed: ``"freed at release,
    <date> UTC"`` (the date unknown: ``"freed at release"``); off: None."""
    if q is None or not q.run:  # no run id: the window is 0, the quarantine is off
        return None
    until = release_date(q)
    return f"freed at release, {until} UTC" if until else "freed at release"


def release_date(q: QuarantineRun) -> str | None:
    """When what this run deletes is released (now + the window), UTC; None when not known."""
    rp = q.plan
    return f"{rp.now + rp.window:%Y-%m-%d %H:%M}" if rp is not None else None


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
            r, t, held, now = result.moved[0]
            back = "would come back" if result.dry_run else "came back"
            how = "by digest only" if (r, held) in result.untagged_back() else "under its other tag(s)"
            rep.lead(
                f"{len(result.moved)} tag(s) NOT restored: pushed to another image since the delete, "
                f"e.g. {r}:{t} now points to {now}; the held image {back} {how} ({r}@{held})"
            )
            fate = _untagged_fate(result)
            if fate:
                rep.lead(fate)
        if result.dry_run:
            rep.lead(f"Nothing changed: `{undo_command(run)}` restores the above (in the UI: dry_run off)")
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
        rep.lead(f"Nothing undone: {error}")  # in the red box, not only among the notes
        rep.note(error)
        return rep.finish("failed")
    if result is not None and result.failed:
        return rep.finish("failed")
    return rep.finish("dry-run" if result is None or result.dry_run else "ok")


def _untagged_fate(result: UndoResult) -> str | None:
    """What becomes of the held images of moved tags that come back with no tag at all: a later
    gc / expire that deletes untagged manifests deletes them again and holds them again; a tag
    keeps them. None when every such image keeps a tag."""
    bare = result.untagged_back()
    if not bare:
        return None
    (r, held), t = next(iter(bare.items()))
    what = "that image" if len(bare) == 1 else f"these {len(bare)} images"
    return (
        f"Untagged, {what} will be deleted again by a later gc / expire that deletes untagged "
        f"manifests (deleteUntagged, past untaggedGrace; a tagStatus: untagged rule) and held in the "
        f"quarantine again; to keep one, tag it after the undo, e.g. {r}@{held} as {t}-restored"
    )


def list_lines(registry: str, rows: list[dict]) -> list[str]:
    """``regkeeper quarantine list``: one line per run (newest last), then how to undo one."""
    if not rows:
        return [f"{registry}: the quarantine holds nothing"]
    out = [
        f"{registry}: the quarantine holds {len(rows)} run(s); times in UTC",
        f"{'run':<38} {'deleted by':<10} {'held since':<17} {'undoable until':<17} {'tags':>5} "
        f"{'manifests':>9} {'bytes':>10}  repositories",
    ]
    for r in rows:
        out.append(
            f"{r['run']:<38} {r.get('rules') or '?':<10} {r['held_since']:%Y-%m-%d %H:%M}{'':<1} "
            f"{r['release_at']:%Y-%m-%d %H:%M}{'':<1} "
            f"{r['tags']:>5} {r['manifests']:>9} {human_bytes(r['bytes_held']):>10}  {r['repositories']}"
        )
    out.append(
        f"undo a run: regkeeper undo --run RUN (a dry run: says what would come back) then add --apply; "
        f"e.g. regkeeper undo --run {rows[-1]['run']}"
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
        if until:
            s["held until (UTC)"] = f"{until:%Y-%m-%d %H:%M}"
        s["undo this run"] = undo_command(q.run)
        rep.lead(
            f"{len(q.held.held)} deleted manifest(s) ({human_bytes(q.held.held_bytes)}) held in quarantine"
            + (f" until {until:%Y-%m-%d %H:%M} UTC" if until else "")
            + f", undoable until then: `{undo_command(q.run, apply=False)}` says what would come back, "
            "add `--apply` to restore. No byte of them is reclaimed before that time"
        )
        rep.headline.insert(1, rep.headline.pop())  # said right after what was deleted
    if rp is None:
        return
    s["bytes held in quarantine (before this run)"] = rp.bytes_held
    s["quarantine entries released" if not dry_run else "quarantine entries to release"] = len(rp.due)
    s["bytes the release frees (preview)"] = rp.bytes_freed
    later = [r.release_at(rp.window) for r in rp.held if r not in rp.due]
    if later:
        s["next quarantine release"] = min(later)
    backs = {(id(r), d) for r, d, _, _ in rp.back}
    if rp.due:
        gone = [
            f"{r.repository}:{t}"
            for r in rp.due
            for e in r.entries
            if (id(r), e.digest) not in backs
            for t in e.tags
        ]
        runs = sorted({r.run for r in rp.due})
        rep.lead(
            f"{'Released' if not dry_run else 'To release'} for good (held past the {format_window(rp.window)} "
            f"window, no longer undoable): {_some(gone) or 'untagged manifests only'} "
            f"(run {', '.join(runs)}; {human_bytes(rp.bytes_freed)} freed by the reclaim)"
        )
    for r, d, tags, used in rp.back:
        what = ", ".join(f"{r.repository}:{t}" for t in tags.split(",") if t) or f"{r.repository}@{d}"
        verb = "put back" if not dry_run else "to put back"
        rep.lead(
            f"In use by {used}, so NOT released: {what} {verb} into {r.repository} (left the quarantine)"
        )
    if q.back is not None:
        s["released back (in use)"] = len(q.back.restored) + len(q.back.untagged)
    if q.released is not None:
        s["quarantine deletes ok"] = len(q.released.deleted)
        s["quarantine deletes failed"] = len(q.released.failed)
    rows = rp.rows()
    for row, r in zip(rows, rp.held, strict=True):
        row["tag_names"] = _some([t for e in r.entries for t in e.tags], 10)
        if row["action"] == "release now" and any((id(r), e.digest) in backs for e in r.entries):
            row["action"] = "release now; in-use entries put back"
    cols = ["run", "repository", "manifests", "tags", "tag_names", "bytes_held", "held_since", "release_at"]
    rep.add_table(
        "quarantine", rows, cols + ["action"], empty="The quarantine held nothing when this run started."
    )


def _some(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def format_window(td) -> str:
    from ..config.units import format_duration

    return format_duration(td)
