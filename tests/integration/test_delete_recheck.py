"""The delete path re-reads tags just before deleting (DELETE by digest removes every tag on it)
and orders deletes so a stopped run leaves no index without its children."""

import datetime as dt
import os
from pathlib import Path

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.inventory import scan
from regkeeper.policy import delete_levels
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)


def age(reg, repo, tag):
    link = (
        Path(reg.root) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link"
    )
    os.utime(link, (OLD.timestamp(), OLD.timestamp()))


def test_tag_pushed_after_the_scan_protects_its_repository(registry_factory, tmp_path):
    reg = registry_factory()
    for repo in ("rc/a", "rc/b"):
        images.push_image(reg.url, repo, "old", created=OLD, seed=repo)
        images.push_image(reg.url, repo, "new", seed=repo + "n")
        age(reg, repo, "old")
    cfg = write_config(
        tmp_path / "regkeeper.yaml", [registry_entry(reg)], gc={"days": 30, "keepLast": 0, "protect": []}
    )
    ctx = RunContext.load(cfg)
    inv = scan(ctx.client("local-registry"), storage=ctx.storage("local-registry"))
    plan = prune.gc_plan(ctx, "local-registry", inv, prune.KubeState(None))
    old_a = inv.repositories["rc/a"].tags["old"]
    assert ("rc/a", old_a) in plan.manifests_to_delete()
    # CI pushes "stable" onto the digest gc is about to delete
    images.tag_existing(reg.url, "rc/a", "stable", old_a)
    res = prune.delete_batch(
        ctx, "local-registry", plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan)
    )
    assert [r for r, _ in res.skipped] == ["rc/a"] and "stable" in res.skipped[0][1]
    assert sorted(images.list_tags(reg.url, "rc/a")) == ["new", "old", "stable"]
    assert sorted(images.list_tags(reg.url, "rc/b")) == ["new"]  # the other repo went ahead
    rep = prune.build_report("gc", "local-registry", plan, inv=inv, deleted=res)
    assert rep.summary["repositories changed since the scan (skipped)"] == 1


def test_delete_levels_referencing_before_referenced(registry_factory, tmp_path):
    reg = registry_factory()
    inner = images.push_index(reg.url, "lv/app", None)
    # an index of an index, signed
    outer_bytes = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
        + f'{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{inner.digest}",'
        f'"size":{len(inner.manifest_bytes)}}}'.encode()
        + b"]}"
    )
    images.put_manifest(reg.url, "lv/app", "outer", outer_bytes, "application/vnd.oci.image.index.v1+json")
    outer = images.head_manifest(reg.url, "lv/app", "outer")
    outer_digest = outer if isinstance(outer, str) else getattr(outer, "digest", None) or outer[0]
    sig = images.push_signature(reg.url, "lv/app", outer_digest)
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg)])
    ctx = RunContext.load(cfg)
    inv = scan(ctx.client("local-registry"), storage=ctx.storage("local-registry"))
    items = [
        ("lv/app", d) for d in [c.digest for c in inner.children] + [inner.digest, outer_digest, sig.digest]
    ]
    lv = delete_levels(inv, items)
    assert lv[("lv/app", sig.digest)] < lv[("lv/app", outer_digest)] < lv[("lv/app", inner.digest)]
    assert all(lv[("lv/app", c.digest)] > lv[("lv/app", inner.digest)] for c in inner.children)


def test_recheck_reads_every_repository_in_one_round(registry_factory, tmp_path):
    """The re-read before deleting covers all repositories at once (one concurrent round of tag
    lists, one of HEADs), with the same outcome: only the changed repository is left alone."""
    from regkeeper.oci import RegistryClient
    from regkeeper.prune.delete import _changed_repositories

    reg = registry_factory()
    planned: list[tuple[str, str]] = []
    for i in range(10):
        repo = f"rr/r{i}"
        old = images.push_image(reg.url, repo, "old", seed=f"{repo}-o")
        images.push_image(reg.url, repo, "new", seed=f"{repo}-n")
        planned.append((repo, old.digest))
    images.tag_existing(reg.url, "rr/r4", "new", planned[4][1])  # moved onto it after the plan
    recheck = {repo: {"old"} for repo, _ in planned}
    recheck["rr/missing"] = set()
    planned.append(("rr/missing", "sha256:" + "0" * 64))  # a repository gone since: nothing to keep
    client = RegistryClient("r", reg.url, concurrency=8)
    try:
        reg.clear_access_log()
        skipped = _changed_repositories(client, planned, recheck, 8)
        peak = client.inflight_peak
    finally:
        client.close()
    assert [r for r, _ in skipped] == ["rr/r4"] and "tag new now points to" in skipped[0][1]
    log = reg.access_log()
    assert sorted(e.path for e in log if e.method == "GET") == sorted(
        [f"/v2/rr/r{i}/tags/list" for i in range(10)] + ["/v2/rr/missing/tags/list"]
    )
    heads = sorted(e.path for e in log if e.method == "HEAD")
    assert heads == sorted(f"/v2/rr/r{i}/manifests/new" for i in range(10))
    assert peak > 1  # a round per repository had one request in flight at a time here
