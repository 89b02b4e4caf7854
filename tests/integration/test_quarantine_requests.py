"""What the hold sends (issue 14's cost, bench/quarantine.py): one cross-repository mount per
blob not yet linked in the quarantine repository (shared layers once per repository, also
across calls of one run; each quarantine repository needs its own link, distribution checks
blobs per repository), one PUT per held manifest, one record per repository, and no blob
upload, on distribution 2.8. What is not held is not deleted."""

from urllib.parse import parse_qs

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.quarantine import quarantine_repo
from tests.support import images
from tests.support.matrixcfg import layer
from tests.support.rkconfig import registry_entry, write_config

REG = "local-registry"
NS = "regkeeper-quarantine"


def _sent(reg):
    """(mounts as {(quarantine repo, blob)} with their count, PUT paths, DELETE paths, uploads)."""
    log = reg.access_log()
    mounts = [
        (e.path.removeprefix("/v2/").removesuffix("/blobs/uploads/"), parse_qs(e.query)["mount"][0])
        for e in log
        if e.method == "POST" and "mount=" in e.query
    ]
    puts = [e.path for e in log if e.method == "PUT" and "/manifests/" in e.path]
    deletes = [e.path for e in log if e.method == "DELETE"]
    uploads = [e for e in log if e.method in ("PATCH", "PUT") and "/blobs/uploads/" in e.path]
    return mounts, puts, deletes, uploads


def test_hold_mounts_each_blob_once_per_quarantine_repository(registry_factory, tmp_path):
    reg = registry_factory()
    base = layer(7)  # shared by every image, in both repositories
    names = [("q/a", "1"), ("q/a", "2"), ("q/a", "3"), ("q/a", "keep"), ("q/b", "1"), ("q/b", "keep")]
    imgs = {
        (repo, n): images.push_image(reg.url, repo, n, seed=f"{repo}-{n}", layers=[base, layer(100 + i)])
        for i, (repo, n) in enumerate(names)
    }
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg)], quarantine={"window": "1d"})
    ctx = RunContext.load(cfg)
    try:
        client, q = ctx.client(REG), ctx.quarantine(REG)
        first = [
            ("q/a", imgs["q/a", "1"].digest),
            ("q/a", imgs["q/a", "2"].digest),
            ("q/b", imgs["q/b", "1"].digest),
        ]
        reg.clear_access_log()
        res = prune.delete_manifests(client, first, quarantine=q)
        assert not res.failed and sorted(res.deleted) == sorted(first)
        mounts, puts, deletes, uploads = _sent(reg)

        def blobs(repo, *names):
            return {
                (quarantine_repo(NS, repo), b)
                for n in names
                for b in [imgs[repo, n].config_digest, *imgs[repo, n].layer_digests]
            }

        want = blobs("q/a", "1", "2") | blobs("q/b", "1")
        assert len(want) == 8  # q/a: base + 2 x (layer, config); q/b: base + layer + config
        assert sorted(mounts) == sorted(want)  # each once: the shared base once per repository
        assert not uploads  # no blob data is copied
        held = [f"/v2/{quarantine_repo(NS, r)}/manifests/{d}" for r, d in first]
        records = [f"/v2/{quarantine_repo(NS, r)}/manifests/{q.run}" for r in ("q/a", "q/b")]
        assert sorted(puts) == sorted(held + records)
        assert sorted(deletes) == sorted(f"/v2/{r}/manifests/{d}" for r, d in first)

        # a second delete in the same run: only the blobs not linked yet are mounted
        reg.clear_access_log()
        third = ("q/a", imgs["q/a", "3"].digest)
        res2 = prune.delete_manifests(client, [third], quarantine=q)
        assert not res2.failed and res2.deleted == [third]
        mounts, puts, deletes, uploads = _sent(reg)
        assert sorted(mounts) == sorted(blobs("q/a", "3") - blobs("q/a", "1"))  # not the base again
        assert len(mounts) == 2 and not uploads
        assert sorted(puts) == sorted([f"/v2/{quarantine_repo(NS, 'q/a')}/manifests/{third[1]}", records[0]])
        # the merged record replaced the first one (deleted for good), then the image itself
        assert f"/v2/q/a/manifests/{third[1]}" in deletes and len(deletes) == 2
        assert images.list_tags(reg.url, "q/a") == ["keep"] and images.list_tags(reg.url, "q/b") == ["keep"]
    finally:
        ctx.close()
