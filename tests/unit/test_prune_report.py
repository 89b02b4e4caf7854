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


def _pulled_plan(since_days: float):
    from regkeeper.policy import plan, tier_resolver
    from regkeeper.pulls.history import PullHistory
    from tests.unit.test_policy import NOW, ago, dg, image, inv, repo

    rules = [{"name": "branches", "keep": {"pulledWithin": "30d"}, "delete": {"olderThan": "30d"}}]
    res = tier_resolver([{"name": "t", "match": ["**"], "rules": rules}])
    r = repo(
        "a", [image("x"), image("y"), image("z")], {"x": "x", "y": "y", "z": "z"}, {"x": 90, "y": 90, "z": 2}
    )
    pulls = PullHistory("local-registry", {("a", dg("x")): ago(1)}, since=ago(since_days), alive=NOW)
    return plan(inv(r), res, now=NOW, pulls=pulls)


def test_headline_says_when_the_pull_history_fail_safe_is_why_nothing_is_deleted():
    rep = build_report("expire", "local-registry", _pulled_plan(since_days=5), dry_run=True)
    assert rep.headline[0] == "Nothing to delete: all 3 tags kept."
    assert rep.headline[1] == (
        "Held back by the pulledWithin fail-safe: 1 tag the rules would otherwise delete is kept: "
        "pull history shorter than the window (collecting since 2024-05-27T12:00:00Z). They become "
        "eligible once the pull history covers the whole window."
    )
    assert rep.headline[1] in rep.markdown() and "Held back by the pulledWithin fail-safe" in rep.html()
    # covered: y is deleted, nothing held back, no such line
    covered = build_report("expire", "local-registry", _pulled_plan(since_days=60), dry_run=True)
    assert covered.headline[0].startswith("Would delete 1 tag (1 manifest)")
    assert not any("fail-safe" in h for h in covered.headline)


def test_manifests_table_lists_deletes_then_by_tags():
    rep = build_report("expire", "local-registry", _pulled_plan(since_days=60), dry_run=True)
    rows = rep.table("manifests").rows
    assert [(r["action"], r["tags"]) for r in rows] == [("delete", "y"), ("keep", "x"), ("keep", "z")]
