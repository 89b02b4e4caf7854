"""The quarantine through the flows and the CLI (issue 14): gc holds what it deletes and says
how to undo it; `regkeeper quarantine list` shows the run; `regkeeper undo` is a dry run unless
--apply and then brings every tag back; the next gc never treats the quarantine namespace as a
repository of its own; after the window gc releases the entries and the reclaim frees what its
preview said (within 5%)."""

import datetime as dt
import os
from pathlib import Path

from regkeeper.context import RunContext
from regkeeper.oci.mediatypes import OCI_INDEX
from regkeeper.quarantine import quarantine_repo
from regkeeper.quarantine.listing import read_records
from tests.integration.test_cli import rk
from tests.support import images
from tests.support.matrixcfg import layer
from tests.support.rkconfig import RegistryControl, held_mirror_config, registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
NS = "regkeeper-quarantine"


def age(reg, repo: str, tag: str) -> None:
    link = (
        Path(reg.root) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link"
    )
    os.utime(link, (OLD.timestamp(), OLD.timestamp()))


def test_gc_holds_undo_restores_and_release_frees(registry_factory, tmp_path, prefect_api):
    from flows.gc import gc
    from flows.undo import undo

    reg = registry_factory()
    ctl = RegistryControl(reg)
    try:
        old = images.push_image(reg.url, "web/app", "1.0", created=OLD, seed="w1", layers=[layer(11)])
        new = images.push_image(reg.url, "web/app", "2.0", seed="w2")
        sig = images.push_signature(reg.url, "web/app", old.digest)
        age(reg, "web/app", "1.0"), age(reg, "web/app", sig.tag)
        entry = registry_entry(reg, reclaim={**ctl.reclaim_config(), "liveGarbageCollect": True})
        entry["reclaim"].pop("readOnly"), entry["reclaim"].pop("readWrite")
        gc_cfg = {"days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0}
        cfg = write_config(tmp_path / "regkeeper.yaml", [entry], gc=gc_cfg, quarantine={"window": "7d"})

        first = gc(config_path=str(cfg))
        s = first["summary"]
        assert s["deletes held in quarantine (undoable)"] == 2 and s["bytes held by this run"] > 300_000
        run = s["undo this run"].split("--run ")[1].split()[0]
        assert any("held in quarantine until" in h for h in first["headline"])
        assert images.list_tags(reg.url, "web/app") == ["2.0"]
        assert reg.blob_path(old.layer_digests[0]).exists()  # garbage-collect ran, kept it

        listed = rk("quarantine", "list", "--config", str(cfg))
        assert listed.returncode == 0, listed.stderr
        assert run in listed.stdout and "web/app" in listed.stdout
        inv = rk("inventory", "--config", str(cfg))
        assert inv.returncode == 0, inv.stderr
        assert NS not in inv.stdout and f"quarantine {NS}/ kept apart: 1 run(s)" in inv.stderr

        dry = undo(run_id=run, config_path=str(cfg))
        assert dry["status"] == "dry-run" and dry["summary"]["tags to restore"] == 2
        assert images.list_tags(reg.url, "web/app") == ["2.0"]
        out = rk("undo", "--run", run, "--config", str(cfg), "--apply", prefect=prefect_api, timeout=300)
        assert out.returncode == 0, out.stderr
        assert sorted(images.list_tags(reg.url, "web/app")) == sorted(["1.0", "2.0", sig.tag])
        assert images.head_manifest(reg.url, "web/app", "1.0") == old.digest

        # a restored tag counts as pushed now (its push time is the undo's): age it again;
        # deleted again by a new run, held again; the quarantine namespace is never planned
        age(reg, "web/app", "1.0"), age(reg, "web/app", sig.tag)
        second = gc(config_path=str(cfg))
        assert second["summary"]["deletes held in quarantine (undoable)"] == 2
        ctx = RunContext.load(cfg)
        client = ctx.client("local-registry")
        [rec] = read_records(client, NS)
        rec.time -= dt.timedelta(days=8)  # simulate time through the record, never by sleeping
        client.put_manifest(quarantine_repo(NS, rec.repository), rec.run, rec.to_bytes(), OCI_INDEX)
        third = gc(config_path=str(cfg))
        t = third["summary"]
        preview, measured = t["bytes the release frees (preview)"], t["bytes freed (measured)"]
        assert t["quarantine entries released"] == 1 and preview > 300_000
        assert (
            t["tags scanned"] == 1 and t["tags deleted"] == 0
        )  # web/app:2.0; the record is not a tag of gc's
        assert abs(measured - preview) <= 0.05 * preview, (measured, preview)
        assert not reg.blob_path(old.layer_digests[0]).exists()
        assert images.list_tags(reg.url, "web/app") == ["2.0"]
        assert images.head_manifest(reg.url, "web/app", "2.0") == new.digest
        assert read_records(client, NS) == []
        ctx.close()
    finally:
        ctl.stop()


def test_replicate_flow_holds_delete_extraneous_and_its_report_says_how_to_undo(registry_factory, tmp_path):
    """deleteExtraneous through the replicate flow (one task per batch) with the target's
    quarantine on: the report counts what was held and gives the undo command, whose run id
    brings the deleted tag back on the target; the source is never touched."""
    from flows.replicate import replicate
    from regkeeper.quarantine.undo import undo

    src, dst = registry_factory(), registry_factory()
    images.push_image(src.url, "rep/y", "v1", seed="f1")
    cfg = held_mirror_config(tmp_path / "regkeeper.yaml", src, dst)
    assert replicate(config_path=str(cfg))["status"] == "ok"
    extra = images.push_image(dst.url, "rep/y", "only-here", seed="f2")
    out = replicate(config_path=str(cfg))
    assert out["status"] == "ok"
    [rep] = out["reports"]
    assert rep["summary"]["deletes held in quarantine (undoable)"] == 1
    undo_cmd = rep["summary"]["undo this run"]
    assert undo_cmd.startswith("regkeeper undo --registry replica --run ") and undo_cmd.endswith(" --apply")
    assert any("held in replica's quarantine" in h for h in rep["headline"])
    assert images.list_tags(dst.url, "rep/y") == ["v1"]
    ctx = RunContext.load(cfg)
    try:
        run = undo_cmd.split("--run ")[1].split()[0]
        done = undo(ctx.client("replica"), ctx.config.quarantine, run, apply=True)
        assert done.restored == [("rep/y", "only-here", extra.digest)] and not done.failed
    finally:
        ctx.close()
    assert sorted(images.list_tags(dst.url, "rep/y")) == ["only-here", "v1"]
    assert images.list_tags(src.url, "rep/y") == ["v1"]
