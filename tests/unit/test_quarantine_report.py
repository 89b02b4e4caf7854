"""What a user reads about the quarantine (issue 14): the gc / expire report says what is held,
how many bytes, until when and the exact undo command; the release names what is gone for good
and what was put back because a workload uses it; the undo report says what would come back and
what would not (a moved tag) and where the held image of a moved tag goes; `regkeeper
quarantine list` shows per run what is needed to pick the run to undo."""

from datetime import UTC, datetime, timedelta

from regkeeper.prune.delete import DeleteResult
from regkeeper.quarantine.record import Entry, Record
from regkeeper.quarantine.release import ReleasePlan
from regkeeper.quarantine.report import QuarantineRun, list_lines, quarantine_section, undo_report
from regkeeper.quarantine.undo import UndoResult
from regkeeper.report import Report

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RUN = "265ed099-1f4a-4511-837b-bbbf00936f93"
OLD_RUN = "75afd145-7942-4216-a684-f68dfe0b7a81"
D1, D2, D3 = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64


def _record(run=OLD_RUN, repo="web/app", days_ago=8) -> Record:
    entries = [
        Entry(
            D1, "application/vnd.oci.image.manifest.v1+json", 500, ("1.0", "1.0-old"), "gc", "older than 30d"
        ),
        Entry(D2, "application/vnd.oci.image.manifest.v1+json", 400, ("1.1",), "gc", "older than 30d"),
        Entry(D3, "application/vnd.oci.image.manifest.v1+json", 300, (), "gc", "child"),
    ]
    return Record(repo, run, NOW - timedelta(days=days_ago), entries, bytes_held=2 * 1024 * 1024)


def _gc_report(q: QuarantineRun, dry_run=False) -> Report:
    rep = Report(flow="gc", registry="local", title="regkeeper gc")
    rep.lead("Deleted 3 of 3 planned manifests (2 tags (3 manifests) in 1 repository).")
    rep.lead("No Kubernetes in-use protection: images that workloads use are NOT protected.")
    quarantine_section(rep, q, dry_run)
    return rep


def test_gc_report_says_what_is_held_the_bytes_until_when_and_the_undo_command():
    held = DeleteResult(held=[("web/app", D1), ("web/app", D2)], held_bytes=3 * 1024 * 1024)
    plan = ReleasePlan(window=timedelta(days=7), now=NOW)
    rep = _gc_report(QuarantineRun(run=RUN, plan=plan, held=held))
    said = rep.headline[1]  # right after what was deleted, before the other lines
    assert "2 deleted manifest(s) (3.0 MiB) held in quarantine until 2026-12-09 12:00 UTC" in said
    assert f"`regkeeper undo --run {RUN}` says what would come back, add `--apply` to restore" in said
    assert "No byte of them is reclaimed before that time" in said
    assert rep.summary["held until (UTC)"] == "2026-12-09 12:00"
    assert rep.summary["undo this run"] == f"regkeeper undo --run {RUN} --apply"
    [table] = rep.tables
    assert table.rows == [] and "held nothing when this run started" in table.empty


def test_release_names_what_is_gone_for_good_and_what_was_put_back():
    due = _record()
    later = _record(run=RUN, repo="api/svc", days_ago=1)
    plan = ReleasePlan(window=timedelta(days=7), now=NOW, held=[due, later], due=[due], bytes_freed=900_000)
    plan.back.append((due, D2, "1.1", "deployment prod/web"))
    rep = _gc_report(QuarantineRun(run=RUN, plan=plan))
    gone = next(h for h in rep.headline if "for good" in h)
    assert gone.startswith("Released for good (held past the 7d window, no longer undoable)")
    assert "web/app:1.0, web/app:1.0-old" in gone and "web/app:1.1" not in gone  # 1.1 was put back
    assert f"run {OLD_RUN}" in gone and "878.9 KiB freed by the reclaim" in gone
    back = next(h for h in rep.headline if "NOT released" in h)
    assert (
        back
        == "In use by deployment prod/web, so NOT released: web/app:1.1 put back into web/app (left the quarantine)"
    )
    assert rep.summary["next quarantine release"] == later.release_at(timedelta(days=7))
    rows = {r["run"]: r for r in rep.tables[0].rows}
    assert rows[OLD_RUN]["tag_names"] == "1.0, 1.0-old, 1.1"
    assert rows[OLD_RUN]["action"] == "release now; in-use entries put back" and rows[RUN]["action"] == "held"
    dry = _gc_report(QuarantineRun(run=RUN, plan=plan), dry_run=True)
    assert any(h.startswith("To release for good") for h in dry.headline)
    assert any("web/app:1.1 to put back into web/app" in h for h in dry.headline)


def test_undo_dry_run_says_what_comes_back_what_does_not_and_how_to_apply():
    res = UndoResult(RUN, dry_run=True, restored=[("web/app", "1.0", D1)], untagged=[("web/app", D3)])
    res.moved.append(("web/app", "1.1", D2, "sha256:" + "9" * 64))
    rep = undo_report("local", RUN, res, None, NOW)
    assert rep.status == "dry-run"
    assert rep.headline[0] == "1 tag(s) and 1 untagged manifest(s) would be restored"
    assert "1 tag(s) NOT restored: pushed to another image since the delete" in rep.headline[1]
    assert f"the held image would come back by digest only (web/app@{D2})" in rep.headline[1]
    # what becomes of it untagged, and how to keep it, said in the next line
    assert rep.headline[2] == (
        "Untagged, that image will be deleted again by a later gc / expire that deletes untagged "
        "manifests (deleteUntagged, past untaggedGrace; a tagStatus: untagged rule) and held in the "
        f"quarantine again; to keep one, tag it after the undo, e.g. web/app@{D2} as 1.1-restored"
    )
    assert (
        rep.headline[3]
        == f"Nothing changed: `regkeeper undo --run {RUN} --apply` restores the above (in the UI: dry_run off)"
    )
    moved = [r for r in rep.tables[0].rows if r["tag"] == "1.1"]
    assert moved[0]["outcome"].startswith("NOT restored: tag moved to sha256:9999")
    done = UndoResult(RUN, dry_run=False, restored=[("web/app", "1.0", D1)], moved=res.moved)
    rep = undo_report("local", RUN, done, None, NOW)
    assert rep.status == "ok" and "came back by digest only" in rep.headline[1]
    assert rep.headline[2].startswith("Untagged, that image will be deleted again by a later gc")
    two = UndoResult(RUN, dry_run=False, moved=[*res.moved, ("api/svc", "2.0", D3, D1)])
    assert (
        "Untagged, these 2 images will be deleted again"
        in undo_report("local", RUN, two, None, NOW).headline[2]
    )
    plain = UndoResult(RUN, dry_run=False, restored=[("web/app", "1.0", D1)])  # nothing moved: not said
    assert not any("deleted again" in h for h in undo_report("local", RUN, plain, None, NOW).headline)
    # a moved tag whose image keeps another tag (restored): that image is not untagged, not said
    kept = UndoResult(RUN, dry_run=False, restored=[("web/app", "1.0-old", D2)], moved=res.moved)
    said = undo_report("local", RUN, kept, None, NOW)
    assert not any("deleted again" in h for h in said.headline)
    assert f"the held image came back under its other tag(s) (web/app@{D2})" in said.headline[1]
    assert [r["outcome"] for r in said.tables[0].rows if r["tag"] == "1.1"] == [
        "NOT restored: tag moved to sha256:" + "9" * 64 + "; the held image is back under its other tag(s)"
    ]
    assert not any("Nothing changed" in h for h in rep.headline)


def test_quarantine_list_shows_per_run_what_picks_the_run_and_how_to_undo():
    from regkeeper.quarantine.listing import run_rows

    rows = run_rows([_record(), _record(run=RUN, repo="api/svc", days_ago=1)], timedelta(days=7))
    lines = list_lines("local", rows)
    assert lines[0] == "local: the quarantine holds 2 run(s); times in UTC"
    assert "deleted by" in lines[1] and "undoable until" in lines[1]
    old, new = lines[2], lines[3]
    assert (
        old.startswith(OLD_RUN) and " gc " in old and "2026-11-24 12:00" in old and "2026-12-01 12:00" in old
    )
    assert "3         3" in old and "2.0 MiB  web/app" in old
    assert new.startswith(RUN) and new.endswith("api/svc")
    assert lines[4] == (
        "undo a run: regkeeper undo --run RUN (a dry run: says what would come back) then add --apply; "
        f"e.g. regkeeper undo --run {RUN}"
    )
    assert list_lines("local", []) == ["local: the quarantine holds nothing"]


def test_undo_that_could_not_start_says_why_at_the_top():
    why = f"registry 'local': the quarantine (q) holds nothing of run '{RUN}' (released, undone already...)"
    rep = undo_report("local", RUN, None, why, NOW)
    assert rep.status == "failed" and rep.headline == [f"Nothing undone: {why}"]


def test_gc_plan_bytes_with_the_quarantine_on_are_held_until_the_release_not_freed():
    from regkeeper.policy.decisions import ManifestDecision, Plan, TagDecision
    from regkeeper.prune import build_report

    plan = Plan("local", NOW, kube_protection=True, untagged_known=True, bytes_freed=3 * 1024 * 1024)
    plan.policies = {"web/app": "gc"}
    plan.tags = [TagDecision("web/app", "0.9", D1, "delete", "older than 30 days", "gc", 40.0, None, 900)]
    plan.manifests = [ManifestDecision("web/app", D1, "delete", "no tag left", ("0.9",), "image", 900)]
    due = _record()
    rp = ReleasePlan(window=timedelta(days=7), now=NOW, held=[due], due=[due], bytes_freed=900_000)
    on = build_report("gc", "local", plan, dry_run=True, quarantine=QuarantineRun(run=RUN, plan=rp))
    assert "bytes freed (preview)" not in on.summary
    assert on.summary["bytes to hold in quarantine (freed at release)"] == 3 * 1024 * 1024
    assert on.summary["held bytes freed at release (UTC)"] == "2026-12-09 12:00"
    assert on.headline[0] == (
        "Would delete 1 tag (1 manifest) in 1 repository, holding 3.0 MiB in quarantine "
        "(freed at release, 2026-12-09 12:00 UTC; exact)."
    )
    assert not any("freeing" in h for h in on.headline)
    # the release's own bytes are freed now, and say so
    assert on.summary["bytes the release frees (preview)"] == 900_000
    assert any("878.9 KiB freed by the reclaim" in h for h in on.headline)
    # the section present with window 0 (no run id), or absent: unchanged
    for q in (QuarantineRun(run="", plan=ReleasePlan(window=timedelta(0), now=NOW)), None):
        off = build_report("gc", "local", plan, dry_run=True, quarantine=q)
        assert off.summary["bytes freed (preview)"] == 3 * 1024 * 1024
        assert "bytes to hold in quarantine (freed at release)" not in off.summary
        assert off.headline[0] == "Would delete 1 tag (1 manifest) in 1 repository, freeing 3.0 MiB (exact)."
