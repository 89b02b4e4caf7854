"""Verify after gc / expire on a real registry: a kept tag a user moved during the run is
information (when the image it points to now is whole), a kept tag that is gone or whose image
is broken (blob or index child missing) is a problem, and so is a moved tag whose new image is
broken or that points to a manifest the run itself deleted."""

import datetime as dt
import os
import random
from pathlib import Path

import pytest

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.inventory import scan
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
REPO = "vf/app"


def layer(seed, n: int = 3000) -> bytes:
    return random.Random(seed).randbytes(n)


def age(reg, repo, tag):
    tags_dir = Path(reg.root) / "docker/registry/v2/repositories" / repo / "_manifests/tags"
    link = tags_dir / tag / "current/link"
    os.utime(link, (OLD.timestamp(), OLD.timestamp()))


@pytest.fixture
def planned(registry_factory, tmp_path):
    """vf/app: stable (kept), other (kept), old (aged: the plan deletes it); a second repository
    vf/idx with a kept multi-arch index. Returns (reg, ctx, inv, plan, digests)."""
    reg = registry_factory()
    u = reg.url
    d = {
        "stable": images.push_image(u, REPO, "stable", layers=[layer(1)]).digest,
        "other": images.push_image(u, REPO, "other", layers=[layer(2)]).digest,
        "old": images.push_image(u, REPO, "old", created=OLD, layers=[layer(3)]).digest,
    }
    age(reg, REPO, "old")
    idx = images.push_index(u, "vf/idx", "multi")
    images.push_image(u, "vf/idx", "old", created=OLD, layers=[layer(4)])
    age(reg, "vf/idx", "old")
    d["multi"], d["multi_children"] = idx.digest, [c.digest for c in idx.children]
    cfg = write_config(
        tmp_path / "regkeeper.yaml", [registry_entry(reg)], gc={"days": 30, "keepLast": 0, "protect": []}
    )
    ctx = RunContext.load(cfg)
    inv = scan(ctx.client("local-registry"), storage=ctx.storage("local-registry"))
    plan = prune.gc_plan(ctx, "local-registry", inv, prune.KubeState(None))
    assert (REPO, d["old"]) in plan.manifests_to_delete()
    assert {(t.repository, t.tag) for t in plan.kept_tags()} == {
        (REPO, "stable"),
        (REPO, "other"),
        ("vf/idx", "multi"),
    }
    return reg, ctx, inv, plan, d


def execute(ctx, inv, plan):
    """The run after the plan: delete (with the re-check), then verify the touched repositories."""
    deleted = prune.delete_batch(
        ctx, "local-registry", plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan)
    )
    assert not deleted.failed and not deleted.skipped, (deleted.failed, deleted.skipped)
    verified = prune.run_verify(ctx, "local-registry", inv, plan, everything=False, deleted=deleted)
    rep = prune.build_report("gc", "local-registry", plan, inv=inv, deleted=deleted, verified=verified)
    return deleted, verified, rep


def test_kept_tag_moved_after_the_plan_is_information(planned):
    reg, ctx, inv, plan, d = planned
    new = images.push_image(reg.url, REPO, "stable", layers=[layer(10), layer(11)])  # a user re-tags
    images.tag_existing(reg.url, REPO, "other", d["stable"])  # and moves another onto a kept image
    deleted, verified, rep = execute(ctx, inv, plan)
    assert verified.problems == []
    moved = {(m.tag, m.planned, m.now, m.problem) for m in verified.moved}
    assert moved == {("stable", d["stable"], new.digest, None), ("other", d["other"], d["stable"], None)}
    assert verified.blobs_checked >= len(new.layer_digests) + 1
    assert rep.status == "ok"
    assert rep.summary["kept tags moved during the run"] == 2 and rep.summary["verify problems"] == 0
    note = (
        f"tag {REPO}:stable moved during the run from {d['stable'][:19]}… to {new.digest[:19]}… "
        "(pushed after the plan): not a problem"
    )
    assert note in rep.notes
    rows = {r["tag"]: r for r in rep.table("verify").rows}
    assert rows["stable"]["planned digest"] == d["stable"] and rows["stable"]["digest now"] == new.digest
    assert rows["stable"]["result"] == "moved"
    # only the planned delete happened: the images the moved tags left stay
    assert images.head_manifest(reg.url, REPO, d["old"]) is None
    for dg in (d["stable"], d["other"], new.digest):
        assert images.head_manifest(reg.url, REPO, dg) == dg
    assert sorted(images.list_tags(reg.url, REPO)) == ["other", "stable"]


def test_kept_tag_deleted_during_the_run_is_a_problem(planned):
    reg, ctx, inv, plan, d = planned
    assert images.delete_manifest(reg.url, REPO, d["other"]) == 202  # someone deletes "other"
    _, verified, rep = execute(ctx, inv, plan)
    assert verified.moved == []
    assert verified.problems == [(REPO, "other", f"tag missing (expected {d['other']})")]
    assert rep.status == "failed" and rep.summary["verify problems"] == 1
    assert any("vf/app:other tag missing" in n for n in rep.notes)
    assert [r["tag"] for r in rep.table("verify").rows] == ["other"]


def test_moved_tag_whose_new_image_misses_a_blob_is_a_problem(planned):
    reg, ctx, inv, plan, d = planned
    lost = layer(20)
    new = images.push_image(reg.url, REPO, "stable", layers=[lost, layer(21)])
    blob = images.sha256_digest(lost)
    reg.blob_path(blob).unlink()  # storage lost a blob
    _, verified, rep = execute(ctx, inv, plan)
    [m] = verified.moved
    assert (m.tag, m.planned, m.now) == ("stable", d["stable"], new.digest)
    assert m.problem and blob in m.problem
    [(repo, tag, why)] = verified.problems
    assert (repo, tag) == (REPO, "stable") and "moved during the run" in why and blob in why
    assert rep.status == "failed"
    assert rep.summary["verify problems"] == 1 and rep.summary["kept tags moved during the run"] == 1
    assert not any(n.endswith("not a problem") for n in rep.notes)
    [row] = rep.table("verify").rows
    assert row["result"] == "moved, problem" and row["digest now"] == new.digest


def test_moved_tag_to_an_index_missing_a_child_is_a_problem(planned):
    reg, ctx, inv, plan, d = planned
    idx = images.push_index(reg.url, REPO, "stable")
    gone = idx.children[1].digest
    assert images.delete_manifest(reg.url, REPO, gone) == 202
    _, verified, rep = execute(ctx, inv, plan)
    [m] = verified.moved
    assert m.now == idx.digest and gone in (m.problem or "")
    assert [(r, t) for r, t, _ in verified.problems] == [(REPO, "stable")]
    assert rep.status == "failed"


def test_moved_onto_a_manifest_this_run_deleted_is_a_problem(planned):
    reg, ctx, inv, plan, d = planned
    raw, mt, _ = images.get_manifest(reg.url, REPO, d["old"])
    deleted = prune.delete_batch(
        ctx, "local-registry", plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan)
    )
    assert (REPO, d["old"]) in deleted.deleted
    images.put_manifest(reg.url, REPO, "stable", raw, mt)  # pushed back after our delete
    verified = prune.run_verify(ctx, "local-registry", inv, plan, everything=False, deleted=deleted)
    [m] = verified.moved
    assert m.now == d["old"] and "this run deleted" in (m.problem or "")
    assert [(r, t) for r, t, _ in verified.problems] == [(REPO, "stable")]


def test_kept_image_missing_a_blob_or_child_is_a_problem(planned):
    reg, ctx, inv, plan, d = planned
    reg.blob_path(images.sha256_digest(layer(2))).unlink()  # "other" loses a layer
    child = d["multi_children"][0]
    assert images.delete_manifest(reg.url, "vf/idx", child) == 202  # the kept index loses a child
    verified = prune.run_verify(ctx, "local-registry", inv, plan, everything=True)
    assert verified.moved == []
    problems = {(r, t): why for r, t, why in verified.problems}
    assert set(problems) == {(REPO, "other"), ("vf/idx", "multi")}
    assert images.sha256_digest(layer(2)) in problems[(REPO, "other")]
    assert child in problems[("vf/idx", "multi")] and "missing" in problems[("vf/idx", "multi")]
    assert verified.manifests_checked >= len(d["multi_children"])


def test_unchanged_kept_tags_verify_clean(planned):
    reg, ctx, inv, plan, d = planned
    _, verified, rep = execute(ctx, inv, plan)
    assert verified.problems == [] and verified.moved == []
    assert verified.tags_checked == 3 and verified.blobs_checked >= 4
    assert verified.manifests_checked == len(d["multi_children"])  # the index children
    assert rep.status == "ok" and rep.summary["kept tags moved during the run"] == 0
    assert rep.table("verify").rows == []
