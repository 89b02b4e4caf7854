"""The gc / expire report's verify section: a kept tag moved during the run is a note, a count
and a verify-table row with both digests, and leaves the run ok; a problem fails it."""

from regkeeper.prune import build_report
from regkeeper.prune.verify import MovedTag, VerifyResult

OLD = "sha256:" + "ab" * 32
NEW = "sha256:" + "cd" * 32


def test_moved_tag_is_information():
    v = VerifyResult(tags_checked=3, blobs_checked=9, moved=[MovedTag("team-a/app", "stable", OLD, NEW)])
    rep = build_report("gc", "local-registry", None, verified=v)
    assert rep.status == "ok"
    assert rep.summary["kept tags moved during the run"] == 1 and rep.summary["verify problems"] == 0
    assert rep.notes == [
        "tag team-a/app:stable moved during the run from sha256:abababababab… to "
        "sha256:cdcdcdcdcdcd… (pushed after the plan): not a problem"
    ]
    [row] = rep.table("verify").rows
    assert row == {
        "repository": "team-a/app",
        "tag": "stable",
        "result": "moved",
        "planned digest": OLD,
        "digest now": NEW,
        "detail": "pushed after the plan: not a problem",
    }
    assert "not a problem" in rep.markdown() and NEW in rep.html()


def test_moved_tag_with_a_broken_image_and_a_missing_tag_fail_the_run():
    broken = MovedTag(
        "team-a/app",
        "stable",
        OLD,
        NEW,
        problem="the image it points to now is not whole: blob sha256:ee… unreadable: HEAD 404",
    )
    v = VerifyResult(
        tags_checked=2,
        moved=[broken],
        problems=[
            ("team-a/app", "stable", f"{broken.describe()}, but {broken.problem}"),
            ("team-a/app", "prod", f"tag missing (expected {OLD})"),
        ],
    )
    rep = build_report("expire", "local-registry", None, verified=v)
    assert rep.status == "failed"
    assert rep.summary["verify problems"] == 2 and rep.summary["kept tags moved during the run"] == 1
    assert not any(n.endswith("not a problem") for n in rep.notes)
    assert any(
        n.startswith("verify: team-a/app:stable moved during the run") and "HEAD 404" in n for n in rep.notes
    )
    rows = rep.table("verify").rows
    assert [(r["tag"], r["result"]) for r in rows] == [("stable", "moved, problem"), ("prod", "problem")]
    assert rows[0]["digest now"] == NEW


def test_clean_verify_has_an_empty_table():
    rep = build_report("gc", "local-registry", None, verified=VerifyResult(tags_checked=4, blobs_checked=8))
    assert rep.status == "ok" and rep.summary["kept tags moved during the run"] == 0
    assert rep.table("verify").rows == [] and rep.notes == []
