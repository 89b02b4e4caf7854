"""Undoable deletes (issue 14) on distribution 2.8 with filesystem storage, through the core
(no Prefect): gc holds what it deletes under the quarantine namespace; the registry's
garbage-collect reclaims none of it; ``undo`` brings every tag back with the same digest and
every image whole; a tag moved since the delete is not overwritten; what a run kept is never
touched; a whole temp repository removed by the 72h expiry comes back in ``_catalog``."""

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.errors import RegkeeperError
from regkeeper.inventory import scan
from regkeeper.kube.inuse import InUseSource, RegistryUsage
from regkeeper.kube.refs import parse_image_ref
from regkeeper.oci.mediatypes import OCI_INDEX
from regkeeper.quarantine import quarantine_repo
from regkeeper.quarantine.listing import read_records, run_rows
from regkeeper.quarantine.undo import undo
from tests.support import images
from tests.support.matrixcfg import layer
from tests.support.rkconfig import RegistryControl, held_mirror_config, registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
REG = "local-registry"
NS = "regkeeper-quarantine"
GC = {"days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0}


def age(reg, repo, tag, when=OLD):
    link = (
        Path(reg.root) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link"
    )
    os.utime(link, (when.timestamp(), when.timestamp()))


def gc_once(ctx: RunContext, reclaim: bool = False):
    inv = scan(ctx.client(REG), storage=ctx.storage(REG))
    plan = prune.gc_plan(ctx, REG, inv, prune.KubeState(None))
    res = prune.delete_batch(
        ctx, REG, plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan), plan=plan
    )
    rec = prune.run_reclaim(ctx, REG, plan, bool(res.deleted)) if reclaim else None
    return plan, res, rec


def whole(reg, repo: str, digest: str) -> None:
    """The manifest, every child and every blob answer 200 in ``repo``."""
    raw, _, _ = images.get_manifest(reg.url, repo, digest)
    doc = json.loads(raw)
    for child in doc.get("manifests", []):
        whole(reg, repo, child["digest"])
    for blob in [doc.get("config")] + doc.get("layers", []):
        if blob:
            assert images.blob_exists(reg.url, repo, blob["digest"]), (repo, blob["digest"])


@pytest.fixture
def held(registry_factory, tmp_path):
    """gc with quarantine on deleted an old multi-arch index (signed) and an old image in app/a;
    kept app/a:new and everything in app/b."""
    reg = registry_factory()
    ctl = RegistryControl(reg)
    old_index = images.push_index(reg.url, "app/a", "old-index", created=OLD)
    sig = images.push_signature(reg.url, "app/a", old_index.digest)
    old = images.push_image(reg.url, "app/a", "old", created=OLD, seed="a-old", layers=[layer(1)])
    images.tag_existing(reg.url, "app/a", "old-too", old.digest)
    new = images.push_image(reg.url, "app/a", "new", seed="a-new")
    keep_b = images.push_image(reg.url, "app/b", "v1", seed="b-1")
    for t in ("old-index", "old", "old-too", sig.tag):
        age(reg, "app/a", t)
    entry = registry_entry(reg, reclaim={**ctl.reclaim_config(), "liveGarbageCollect": True})
    entry["reclaim"].pop("readOnly"), entry["reclaim"].pop("readWrite")
    cfg = write_config(tmp_path / "regkeeper.yaml", [entry], gc=GC, quarantine={"window": "7d"})
    ctx = RunContext.load(cfg)
    plan, res, reclaimed = gc_once(ctx, reclaim=True)
    yield reg, ctx, res, {"index": old_index, "sig": sig, "old": old, "new": new, "b": keep_b}
    ctl.stop()
    ctx.close()


def test_gc_holds_deletes_and_garbage_collect_keeps_their_blobs(held):
    reg, ctx, res, im = held
    assert sorted(images.list_tags(reg.url, "app/a")) == ["new"]  # the deleted tags are gone
    assert images.list_tags(reg.url, "app/b") == ["v1"]  # what was kept is untouched
    whole(reg, "app/a", im["new"].digest)
    assert not res.failed and res.held and res.held_bytes > 0
    assert {d for _, d in res.held} >= {im["index"].digest, im["sig"].digest, im["old"].digest}
    # the registry's own garbage-collect ran (reclaim) and reclaimed nothing held
    held_blobs = [im["old"].config_digest, *im["old"].layer_digests]
    for child in im["index"].children:
        held_blobs += [child.config_digest, *child.layer_digests]
    for b in held_blobs:
        assert reg.blob_path(b).exists(), b
    [rec] = read_records(ctx.client(REG), NS)
    assert rec.repository == "app/a" and rec.run == ctx.quarantine(REG).run
    by_digest = {e.digest: e for e in rec.entries}
    assert by_digest[im["old"].digest].tags == ("old", "old-too")
    assert by_digest[im["old"].digest].rule == "gc" and "older than" in by_digest[im["old"].digest].reason
    assert images.list_tags(reg.url, quarantine_repo(NS, "app/a")) == [rec.run]
    [row] = run_rows([rec], dt.timedelta(days=7))
    assert row["tags"] == 4 and row["release_at"] == rec.time + dt.timedelta(days=7)


def test_undo_brings_every_tag_back_whole(held):
    reg, ctx, res, im = held
    client = ctx.client(REG)
    run = ctx.quarantine(REG).run
    dry = undo(client, ctx.config.quarantine, run)
    assert dry.dry_run and len(dry.restored) == 4
    assert sorted(images.list_tags(reg.url, "app/a")) == ["new"]  # a dry run changes nothing
    done = undo(client, ctx.config.quarantine, run, apply=True)
    assert not done.failed and not done.moved, done.failed
    assert sorted(images.list_tags(reg.url, "app/a")) == sorted(
        ["new", "old", "old-too", "old-index", im["sig"].tag]
    )
    for tag, img in (
        ("old", im["old"]),
        ("old-too", im["old"]),
        ("old-index", im["index"]),
        (im["sig"].tag, im["sig"]),
    ):
        assert images.head_manifest(reg.url, "app/a", tag) == img.digest
        whole(reg, "app/a", img.digest)
    # undone entries left the quarantine: no record, no held manifest keeping blobs there
    assert read_records(client, NS) == []
    assert images.list_tags(reg.url, quarantine_repo(NS, "app/a")) == []
    with pytest.raises(RegkeeperError, match="holds nothing of run"):
        undo(client, ctx.config.quarantine, run, apply=True)


def test_undo_never_overwrites_a_moved_tag(held):
    reg, ctx, res, im = held
    moved = images.push_image(reg.url, "app/a", "old", seed="a-pushed-again")
    got = undo(ctx.client(REG), ctx.config.quarantine, ctx.quarantine(REG).run, tags="old*", apply=True)
    assert got.moved == [("app/a", "old", im["old"].digest, moved.digest)]
    assert images.head_manifest(reg.url, "app/a", "old") == moved.digest  # not overwritten
    assert images.head_manifest(reg.url, "app/a", "old-too") == im["old"].digest
    assert images.head_manifest(reg.url, "app/a", "old-index") == im["index"].digest
    # the held image kept its other tag: the report says so, and not that it is untagged
    from regkeeper.quarantine.report import undo_report

    said = undo_report(REG, got.run, got, None, dt.datetime.now(dt.UTC)).headline
    assert f"the held image came back under its other tag(s) (app/a@{im['old'].digest})" in said[1]
    assert not any("deleted again" in h for h in said) and got.untagged_back() == {}
    # the tag glob chose: the signature's tag was not selected on its own, but follows its subject
    assert images.head_manifest(reg.url, "app/a", im["sig"].tag) == im["sig"].digest


def test_quarantine_off_deletes_as_before(registry_factory, tmp_path):
    reg = registry_factory()
    images.push_image(reg.url, "z/a", "old", created=OLD, seed="z-old")
    images.push_image(reg.url, "z/a", "new", seed="z-new")
    age(reg, "z/a", "old")
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg)], gc=GC, quarantine={"window": 0})
    ctx = RunContext.load(cfg)
    assert ctx.quarantine(REG) is None
    _, res, _ = gc_once(ctx)
    assert res.deleted and not res.held
    assert images.catalog(reg.url) == ["z/a"]  # no quarantine namespace was written


def test_expired_temp_repository_comes_back_whole(registry_factory, tmp_path):
    reg = registry_factory()
    ctl = RegistryControl(reg)
    a = images.push_image(reg.url, "tmp/pr-7", "build-1", seed="t1")
    b = images.push_image(reg.url, "tmp/pr-7", "build-2", seed="t2")
    images.push_image(reg.url, "stay/x", "v1", seed="s1")
    for t in ("build-1", "build-2"):
        age(reg, "tmp/pr-7", t, dt.datetime.now(dt.UTC) - dt.timedelta(hours=80))
    tiers = [{"name": "temp", "match": ["tmp/**"], "ttl": "72h", "deleteRepository": True}]
    entry = registry_entry(reg, reclaim={**ctl.reclaim_config(), "liveGarbageCollect": True})
    entry["reclaim"].pop("readOnly"), entry["reclaim"].pop("readWrite")
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [entry],
        tiers=tiers,
        expire={"maxDeleteFraction": 1.0},
        quarantine={"window": "7d"},
    )
    ctx = RunContext.load(cfg)
    try:
        inv = scan(ctx.client(REG), storage=ctx.storage(REG))
        plan = prune.expire_plan(ctx, REG, inv, prune.KubeState(None))
        assert plan.repositories_to_remove == ["tmp/pr-7"]
        res = prune.delete_batch(ctx, REG, plan.manifests_to_delete(), inv, plan=plan)
        rec = prune.run_reclaim(ctx, REG, plan, bool(res.deleted))
        assert rec.repositories_removed == ["tmp/pr-7"]
        assert "tmp/pr-7" not in images.catalog(reg.url)
        done = undo(ctx.client(REG), ctx.config.quarantine, ctx.quarantine(REG).run, apply=True)
        assert not done.failed, done.failed
        assert "tmp/pr-7" in images.catalog(reg.url)
        assert sorted(images.list_tags(reg.url, "tmp/pr-7")) == ["build-1", "build-2"]
        for tag, img in (("build-1", a), ("build-2", b)):
            assert images.head_manifest(reg.url, "tmp/pr-7", tag) == img.digest
            whole(reg, "tmp/pr-7", img.digest)
        assert images.list_tags(reg.url, "stay/x") == ["v1"]
    finally:
        ctl.stop()
        ctx.close()


def backdate(client, rec, days: int) -> None:
    """Simulate time: write an older time into the record (never sleep)."""
    rec.time = rec.time - dt.timedelta(days=days)
    client.put_manifest(quarantine_repo(NS, rec.repository), rec.run, rec.to_bytes(), OCI_INDEX)


def release_once(ctx: RunContext, kstate=None):
    inv = scan(ctx.client(REG), storage=ctx.storage(REG))
    kstate = kstate or prune.KubeState(None)
    plan = prune.gc_plan(ctx, REG, inv, kstate)
    rp = prune.release_plan(ctx, REG, inv, kstate)
    back, released = prune.run_release(ctx, REG, rp)
    return rp, back, released, prune.run_reclaim(ctx, REG, plan, bool(released.deleted))


def test_release_after_the_window_frees_what_the_preview_said(held):
    reg, ctx, res, im = held
    client = ctx.client(REG)
    rp, _, released, _ = release_once(ctx)
    assert len(rp.held) == 1 and not rp.due and not released.deleted  # inside the window: kept
    assert rp.bytes_held == res.held_bytes
    backdate(client, rp.held[0], days=8)
    rp, back, released, reclaimed = release_once(ctx)
    assert len(rp.due) == 1 and back is None and not released.failed
    assert rp.bytes_freed > 300_000  # the old image's unique layer, at least
    measured = reclaimed.bytes_freed
    assert abs(measured - rp.bytes_freed) <= 0.05 * rp.bytes_freed, (measured, rp.bytes_freed)
    assert read_records(client, NS) == []
    assert not reg.blob_path(im["old"].layer_digests[0]).exists()  # reclaimed for good
    # what was kept is whole, and the quarantine repository holds nothing any more
    whole(reg, "app/a", im["new"].digest)
    whole(reg, "app/b", im["b"].digest)
    assert images.list_tags(reg.url, quarantine_repo(NS, "app/a")) == []


def test_release_puts_an_image_a_workload_uses_back(held):
    reg, ctx, res, im = held
    client = ctx.client(REG)
    [rec] = read_records(client, NS)
    backdate(client, rec, days=8)
    host = reg.url.split("//", 1)[1]
    ref = parse_image_ref(f"{host}/app/a:old")
    src = InUseSource("prod", "shop", "Deployment", "web", "app", "spec.template.spec.containers[0].image")
    usage = RegistryUsage([host], [(ref, src)])
    rp, back, released, _ = release_once(ctx, prune.KubeState(usage))
    assert [(r.repository, d, tags) for r, d, tags, _ in rp.back] == [
        ("app/a", im["old"].digest, "old,old-too")
    ]
    assert back is not None and sorted(t for _, t, _ in back.restored) == ["old", "old-too"]
    assert images.head_manifest(reg.url, "app/a", "old") == im["old"].digest
    whole(reg, "app/a", im["old"].digest)
    assert images.head_manifest(reg.url, "app/a", "old-index") is None  # not in use: released
    assert read_records(client, NS) == []


def test_every_other_job_leaves_the_namespace_apart(held, registry_factory, tmp_path):
    """inventory, capacity's tag count, backup and replication (both sides, deleteExtraneous
    included) never see the quarantine repositories; capacity counts the held bytes apart."""
    from regkeeper.backup.run import plan_backup
    from regkeeper.inventory import count_tags
    from regkeeper.metrics import RunMetrics
    from regkeeper.replicate.scope import scope_repositories

    reg, ctx, res, im = held
    client = ctx.client(REG)
    qrepo = quarantine_repo(NS, "app/a")
    assert qrepo in client.catalog()  # it is there ...
    assert qrepo not in client.repositories()  # ... and apart
    inv = scan(client, storage=ctx.storage(REG))
    assert sorted(inv.repositories) == ["app/a", "app/b"]
    assert count_tags(client) == (2, 2)  # app/a:new, app/b:v1
    assert plan_backup(client) == ["app/a", "app/b"]
    # a target that holds a quarantine of its own: replication neither copies the source's nor
    # deletes the target's as extraneous
    dst = registry_factory()
    images.push_image(dst.url, quarantine_repo(NS, "gone/x"), "some-run", seed="dst-q")
    cfg = write_config(
        tmp_path / "rep.yaml",
        [registry_entry(reg, REG), registry_entry(dst, "dst")],
        replication=[{"from": REG, "to": ["dst"], "deleteExtraneous": True}],
        quarantine={"window": "7d"},
    )
    rctx = RunContext.load(cfg)
    try:
        rule = rctx.config.replication[0]
        repos, removed, problems = scope_repositories(rctx.client(REG), rctx.client("dst"), rule)
        assert (repos, removed, problems) == (["app/a", "app/b"], [], [])
    finally:
        rctx.close()
    m = RunMetrics("capacity", REG)
    [rec] = read_records(client, NS)
    m.set_quarantine_bytes(rec.bytes_held)
    assert m.collector.get_sample_value("registry_quarantine_bytes", {"registry": REG}) == res.held_bytes


def test_one_run_holding_a_repository_twice_keeps_one_record(registry_factory, tmp_path):
    reg = registry_factory()
    a = images.push_image(reg.url, "two/x", "a", seed="x-a")
    b = images.push_image(reg.url, "two/x", "b", seed="x-b")
    images.push_image(reg.url, "two/x", "c", seed="x-c")
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg)], quarantine={"window": "1d"})
    ctx = RunContext.load(cfg)
    try:
        client = ctx.client(REG)
        q = ctx.quarantine(REG)
        first = prune.delete_manifests(client, [("two/x", a.digest)], quarantine=q)
        [(qrepo, digest)] = [(quarantine_repo(NS, "two/x"), r.digest) for r in read_records(client, NS)]
        second = prune.delete_manifests(client, [("two/x", b.digest)], quarantine=q)
        assert not first.failed and not second.failed
        [rec] = read_records(client, NS)
        assert sorted(e.digest for e in rec.entries) == sorted([a.digest, b.digest])
        assert rec.bytes_held == first.held_bytes + second.held_bytes
        assert images.head_manifest(reg.url, qrepo, digest) is None  # the replaced record is gone
        assert images.list_tags(reg.url, "two/x") == ["c"]
    finally:
        ctx.close()


def test_replication_delete_extraneous_is_held_and_undone(registry_factory, tmp_path):
    """deleteExtraneous holds in the TARGET's quarantine through the same delete path; undo on
    the target puts the tag back; the source is never touched."""
    from regkeeper.replicate import build_report, replicate_target

    src, dst = registry_factory(), registry_factory()
    for i in range(3):
        images.push_image(src.url, "rep/x", f"v{i}", seed=f"r{i}")
    cfg = held_mirror_config(tmp_path / "regkeeper.yaml", src, dst)
    ctx = RunContext.load(cfg)
    try:
        rule = ctx.config.replication[0]
        replicate_target(ctx.client("primary"), ctx.client("replica"), rule, "replica")
        extra = images.push_image(dst.url, "rep/x", "only-on-replica", seed="extra")
        got = replicate_target(
            ctx.client("primary"),
            ctx.client("replica"),
            rule,
            "replica",
            quarantine=ctx.quarantine("replica"),
        )
        assert got.deletes_stopped is None
        assert sorted(images.list_tags(dst.url, "rep/x")) == ["v0", "v1", "v2"]
        run = ctx.quarantine("replica").run
        rep = build_report(got, rule=rule, source="primary", target="replica")
        assert rep.summary["deletes held in quarantine (undoable)"] == 1 == got.held
        assert rep.summary["bytes held by this run"] == got.held_bytes > 0
        assert rep.summary["undo this run"] == f"regkeeper undo --registry replica --run {run} --apply"
        assert any("held in replica's quarantine" in h for h in rep.headline)
        [rec] = read_records(ctx.client("replica"), NS)
        assert [(e.digest, e.tags, e.rule) for e in rec.entries] == [
            (extra.digest, ("only-on-replica",), "deleteExtraneous")
        ]
        assert read_records(ctx.client("primary"), NS) == []  # the source holds nothing
        done = undo(ctx.client("replica"), ctx.config.quarantine, ctx.quarantine("replica").run, apply=True)
        assert done.restored == [("rep/x", "only-on-replica", extra.digest)] and not done.failed
        whole(dst, "rep/x", extra.digest)
        assert sorted(images.list_tags(src.url, "rep/x")) == ["v0", "v1", "v2"]
    finally:
        ctx.close()


def test_undo_of_an_unknown_run_is_one_clear_line_before_prefect_starts(held):
    """`regkeeper undo --run UNKNOWN`: the run's records are read before the flow (and Prefect)
    starts: one line naming the run, the registry and the list command, exit 2, no traceback;
    a run the quarantine holds passes the check; nothing is touched."""
    from argparse import Namespace

    from app.quarantine import undo_precheck
    from tests.integration.test_cli import rk

    reg, ctx, _, im = held
    cfg = str(ctx.config.source)
    out = rk("undo", "--run", "no-such-run", "--config", cfg, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "prefect" not in out.stderr.lower()
    assert out.stderr.strip().splitlines()[-1] == (
        f"regkeeper: undo: registry {REG!r}: the quarantine ({NS}) holds nothing of run 'no-such-run' "
        f"(released, undone already, or never held: see `regkeeper quarantine list --config {cfg}`)"
    )
    scoped = rk("undo", "--run", ctx.quarantine(REG).run, "--repositories", "app/b", "--config", cfg)
    assert scoped.returncode == 2 and "holds nothing of run" in scoped.stderr
    assert "for repositories 'app/b'" in scoped.stderr.splitlines()[-1]
    known = Namespace(config=cfg, registry=None, run=ctx.quarantine(REG).run, repositories=None)
    assert undo_precheck(known) is None
    assert sorted(images.list_tags(reg.url, "app/a")) == ["new"]  # nothing came back
    assert len(read_records(ctx.client(REG), NS)) == 1  # and the record is still held


def test_a_moved_tags_image_back_untagged_is_deleted_and_held_again_as_the_undo_report_says(held, tmp_path):
    """Both tags of the old image were pushed again: undo brings the held image back by digest
    only; the undo report says a later gc deletes it again and holds it again, and how to keep
    it; the next gc (untaggedGrace 0s) does exactly that, and deletes nothing else."""
    from regkeeper.quarantine.report import undo_report

    reg, ctx, _, im = held
    again = {t: images.push_image(reg.url, "app/a", t, seed=f"again-{t}") for t in ("old", "old-too")}
    got = undo(ctx.client(REG), ctx.config.quarantine, ctx.quarantine(REG).run, tags="old*", apply=True)
    assert {(t, h) for _, t, h, _ in got.moved} == {("old", im["old"].digest), ("old-too", im["old"].digest)}
    assert images.head_manifest(reg.url, "app/a", im["old"].digest) == im["old"].digest  # back, untagged
    said = undo_report(REG, got.run, got, None, dt.datetime.now(dt.UTC)).headline
    fate = next(h for h in said if h.startswith("Untagged, that image will be deleted again"))
    assert f"e.g. app/a@{im['old'].digest} as old-restored" in fate

    cfg = write_config(
        tmp_path / "again.yaml",
        [registry_entry(reg)],
        gc={**GC, "untaggedGrace": "0s"},
        quarantine={"window": "7d"},
    )
    later = RunContext.load(cfg)
    try:
        plan, res, _ = gc_once(later)
        assert not res.failed
        assert ("app/a", im["old"].digest) in res.held  # deleted again, held again
        assert images.head_manifest(reg.url, "app/a", im["old"].digest) is None
        for t, img in again.items():  # what is NOT deleted: the tags pushed since, and app/b, new
            assert images.head_manifest(reg.url, "app/a", t) == img.digest
        assert images.head_manifest(reg.url, "app/a", "new") == im["new"].digest
        assert images.list_tags(reg.url, "app/b") == ["v1"]
        run = later.quarantine(REG).run
        assert any(
            e.digest == im["old"].digest
            for r in read_records(later.client(REG), NS, run=run)
            for e in r.entries
        )
    finally:
        later.close()
