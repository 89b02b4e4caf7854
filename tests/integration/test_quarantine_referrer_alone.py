"""A referrer deleted alone (its subject kept: replication's ``deleteExtraneous`` on the
replica) leaves its subject's ``sha256-<hex>`` fallback index with it (no dangling entry), and
undone it is a referrer again: on a registry without the referrers API the index lists it again
(what oras and cosign read); on a registry with the API no fallback tag is written. The other
referrer of the same subject stays listed, once. And the one DELETE drops a manifest from the
digest cache, so a later scan sees a referrer deleted after the cache held it as gone."""

import json

import pytest
import requests

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.inventory import scan
from regkeeper.quarantine.listing import read_records
from regkeeper.quarantine.undo import undo
from regkeeper.replicate import replicate_target
from tests.support import images
from tests.support.rkconfig import held_mirror_config, registry_entry, write_config

NS = "regkeeper-quarantine"


def _listed(reg, repo: str, subject: str) -> list[str]:
    """The digests the registry gives as ``subject``'s referrers: the API where it has one,
    else the fallback index (404: none)."""
    if reg.name == "referrers-api":
        r = requests.get(f"{reg.url}/v2/{repo}/referrers/{subject}", timeout=10)
    else:
        r = requests.get(
            f"{reg.url}/v2/{repo}/manifests/{subject.replace(':', '-')}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            timeout=10,
        )
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return sorted(m["digest"] for m in json.loads(r.content).get("manifests", []))


@pytest.mark.parametrize("registry_matrix", ["dist28-fs", "referrers-api"], indirect=True)
def test_a_referrer_deleted_alone_is_listed_again_after_undo(registry_factory, registry_matrix, tmp_path):
    src, dst = registry_factory(), registry_matrix.start()
    imgs = [images.push_image(src.url, "rep/x", f"v{i}", seed=f"r{i}") for i in range(2)]
    cfg = held_mirror_config(tmp_path / "regkeeper.yaml", src, dst, dst_storage=False)
    ctx = RunContext.load(cfg)
    try:
        rule = ctx.config.replication[0]
        replicate_target(ctx.client("primary"), ctx.client("replica"), rule, "replica")
        api = registry_matrix.name == "referrers-api"
        extra = images.push_referrer(dst.url, "rep/x", imgs[0], tag="sbom-extra", fallback_tag=not api)
        stays = images.push_referrer(dst.url, "rep/x", imgs[0], fallback_tag=not api)
        before = _listed(registry_matrix, "rep/x", imgs[0].digest)
        assert before == sorted([extra.digest, stays.digest])

        replicate_target(
            ctx.client("primary"),
            ctx.client("replica"),
            rule,
            "replica",
            quarantine=ctx.quarantine("replica"),
        )
        [rec] = read_records(ctx.client("replica"), NS)
        assert [(e.digest, e.tags) for e in rec.entries] == [(extra.digest, ("sbom-extra",))]
        assert "sbom-extra" not in images.list_tags(dst.url, "rep/x")
        assert _listed(registry_matrix, "rep/x", imgs[0].digest) == [stays.digest]  # no dangling entry

        done = undo(ctx.client("replica"), ctx.config.quarantine, ctx.quarantine("replica").run, apply=True)
        assert not done.failed
        assert done.restored == [("rep/x", "sbom-extra", extra.digest)]
        assert _listed(registry_matrix, "rep/x", imgs[0].digest) == before  # listed again, once each
        tags = images.list_tags(dst.url, "rep/x")
        assert ("sha256-" + imgs[0].digest.split(":")[1] in tags) is not api  # no fallback tag with the API
        assert not any(t.startswith("sha256-" + imgs[1].digest.split(":")[1]) for t in tags)  # untouched
    finally:
        ctx.close()


def test_a_manifest_deleted_after_the_cache_held_it_is_seen_as_gone(registry_factory, tmp_path):
    """gc's fallback repair relies on the scan seeing a deleted referrer as gone: the digest
    cache (``cacheDir``) answers reads by digest, so the one DELETE drops the digest from it."""
    reg = registry_factory()
    img = images.push_image(reg.url, "c/x", "v1", media="oci", seed="cache")
    lost = images.push_referrer(reg.url, "c/x", img)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, "local", storage=False)],
        gc={"days": 3650, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0},
    )
    ctx = RunContext.load(cfg)
    try:
        client = ctx.client("local")
        assert scan(client).repositories["c/x"].referrers  # read (and cached) by digest
        assert client.cached_manifest(lost.digest) is not None
        assert client.delete_manifest("c/x", lost.digest)
        assert client.cached_manifest(lost.digest) is None
        inv = scan(ctx.client("local"))
        assert prune.needs_repair(inv) == ["c/x"]  # the index lists a referrer that is gone
        plan = prune.gc_plan(ctx, "local", inv, prune.KubeState(None))
        res = prune.delete_batch(ctx, "local", [], inv, plan=plan, repos=prune.needs_repair(inv))
        assert [(r, s) for r, s, _ in res.fallback_updates] == [("c/x", img.digest)]
        assert images.list_tags(reg.url, "c/x") == ["v1"]  # the emptied index is deleted, v1 stays
    finally:
        ctx.close()
