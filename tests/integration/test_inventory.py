"""Inventory scan against a real registry: structure, push times, untagged manifests, the cache."""

import datetime as dt
import os
from pathlib import Path

from regkeeper.cache import DigestCache
from regkeeper.inventory import scan
from regkeeper.oci import RegistryClient
from regkeeper.storage import FilesystemStorage
from tests.support import images
from tests.support.opens import files_opened


def test_inventory_structure_push_times_and_cache(registry_factory, tmp_path):
    reg = registry_factory()
    u = reg.url
    old = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    a = images.push_image(u, "inv/app", "v1", created=old, media="oci")
    images.tag_existing(u, "inv/app", "stable", a.digest)
    b = images.push_image(u, "inv/app", "v2")
    idx = images.push_index(u, "inv/multi", "1.0")
    sig = images.push_signature(u, "inv/app", a.digest)
    gone = images.push_image(u, "inv/app", "tmp")
    images.delete_manifest(u, "inv/app", gone.digest)  # tag gone, revision link gone too
    orphan = images.push_image(u, "inv/app", None)  # pushed by digest only: untagged
    images.push_image(u, "other/x", "1")
    link = Path(reg.root) / "docker/registry/v2/repositories/inv/app/_manifests/tags/v1/current/link"
    t = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    os.utime(link, (t, t))

    cache = DigestCache(tmp_path / "cache")
    c = RegistryClient("t", u, cache=cache)
    inv = scan(c, include=["inv/**"], storage=FilesystemStorage(reg.root))
    assert sorted(inv.repositories) == ["inv/app", "inv/multi"]
    app = inv.repositories["inv/app"]
    sig_tag = "sha256-" + a.digest.split(":")[1] + ".sig"
    assert app.tags == {"v1": a.digest, "stable": a.digest, "v2": b.digest, sig_tag: sig.digest}
    assert app.push_times["v1"].timestamp() == t
    assert inv.push_time_source == "filesystem"
    assert app.untagged == [orphan.digest]
    assert app.signature_tags() == {a.digest: [(sig_tag, "sig")]}
    info = app.manifests[a.digest]
    assert info.kind == "image" and info.config_digest == a.config_digest
    assert [x.digest for x in info.blobs] == [a.config_digest] + a.layer_digests
    multi = inv.repositories["inv/multi"]
    m = multi.manifests[idx.digest]
    assert m.kind == "index" and sorted(m.platforms) == ["linux/amd64", "linux/arm64"]
    for ch in idx.children:  # children are in the inventory although untagged
        assert ch.digest in multi.manifests and multi.manifests[ch.digest].kind == "image"
    # created from the config only where no push time exists (untagged orphan here)
    assert app.manifests[orphan.digest].created is not None

    df = inv.to_dataframe()
    assert len(df) == 5 and set(df["repository"]) == {"inv/app", "inv/multi"}
    csv = inv.to_csv()
    assert csv.splitlines()[0].startswith("repository,tag,digest")

    # a second scan makes no manifest GET for a known digest (HEAD per tag only)
    reg.clear_access_log()
    c2 = RegistryClient("t", u, cache=DigestCache(tmp_path / "cache"))
    inv2 = scan(c2, include=["inv/**"], storage=FilesystemStorage(reg.root))
    log = reg.access_log(min_entries=1)
    manifest_gets = [e for e in log if e.method == "GET" and "/manifests/" in e.path]
    blob_gets = [e for e in log if e.method == "GET" and "/blobs/" in e.path]
    assert manifest_gets == [] and blob_gets == []
    assert inv2.repositories["inv/app"].tags == app.tags
    assert len([e for e in log if e.method == "HEAD"]) == 5

    # a moved tag is noticed on the next scan (HEAD digest differs -> GET the new manifest)
    c3 = images.push_image(u, "inv/app", "v2")
    inv3 = scan(
        RegistryClient("t", u, cache=DigestCache(tmp_path / "cache")),
        include=["inv/app"],
        storage=FilesystemStorage(reg.root),
    )
    assert inv3.repositories["inv/app"].tags["v2"] == c3.digest


def test_inventory_without_storage_uses_created(registry, tmp_path):
    old = dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    images.push_image(registry.url, "inv2/app", "v1", created=old)
    inv = scan(RegistryClient("t", registry.url, cache=DigestCache(tmp_path / "c")), include=["inv2/**"])
    r = inv.repositories["inv2/app"]
    info = r.manifests[r.tags["v1"]]
    assert inv.push_time_source == "none" and r.push_times == {}
    assert info.created == old and info.created_source == "config"


def test_warm_scan_reads_each_cached_manifest_once(registry_factory, tmp_path):
    """A known tag costs one HEAD; a known digest one cache file open (no ``.type`` sidecar, no
    second read of the same entry)."""
    reg = registry_factory()
    u = reg.url
    pushed = [images.push_image(u, "once/app", f"v{i}") for i in range(4)]
    images.tag_existing(u, "once/app", "latest", pushed[-1].digest)  # two tags, one digest
    root = tmp_path / "cache"
    scan(RegistryClient("t", u, cache=DigestCache(root)), storage=FilesystemStorage(reg.root))
    assert not list(root.rglob("*.type"))
    c = RegistryClient("t", u, cache=DigestCache(root))
    with files_opened(root / "manifests") as opened:
        inv = scan(c, storage=FilesystemStorage(reg.root))
    assert inv.repositories["once/app"].tags["latest"] == pushed[-1].digest
    want = sorted(str(next((root / "manifests").rglob(p.digest.split(":")[1]))) for p in pushed)
    assert sorted(opened) == want  # one open per digest ("latest" and "v3" share one)
    # catalog + tags list + the one referrers-API probe per client (404 here: tag-schema mode)
    assert c.stats["HEAD"] == 5 and c.stats["GET"] == 3
    assert inv.stats["referrers_mode"] == "tag-schema" and inv.stats["referrer_requests"] == 1
