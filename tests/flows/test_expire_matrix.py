"""expire's whole-repository TTL on every registry of the matrix (issue 12): distribution 2.8 on a
filesystem and on S3 (moto), distribution 3 on a filesystem, and the referrers-API registry.

Temp repositories past their TTL are deleted whole; a base repository that shares a layer with
them is untouched and stays whole. Where regkeeper can read the storage and the registry has a
garbage-collect (both distributions, filesystem and S3), the emptied repositories leave the
catalog and the temp images' own layers leave the storage; the shared layer stays. The
referrers-API registry keeps everything in memory and has no garbage-collect: there expire
deletes the tags (ages from the images' created time, no storage), and the test says what
remains of the repositories."""

import datetime as dt
import time

from tests.support import images
from tests.support.matrixcfg import blob_stored, layer, matrix_entry, whole
from tests.support.rkconfig import RegistryControl, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
TIERS = [
    {"name": "base", "match": ["base/**"], "keep": "forever"},
    {"name": "temp", "match": ["ci/**"], "ttl": "2s", "deleteRepository": True},
]


def test_expire_removes_temp_repositories_whole_on_every_registry(registry_matrix, tmp_path):
    from flows.expire import expire

    reg = registry_matrix
    caps = reg.capabilities
    shared = layer(1)
    base = [
        images.push_image(reg.url, "base/os", t, layers=[shared, layer(2 + i)], created=OLD, verify=False)
        for i, t in enumerate(["1.0", "2.0"])
    ]
    temp = {
        ("ci/build-1", "a"): layer(10),
        ("ci/build-1", "b"): layer(11),
        ("ci/build-2", "a"): layer(12),
    }
    pushed = {
        k: images.push_image(reg.url, k[0], k[1], layers=[shared, u], created=OLD, verify=False)
        for k, u in temp.items()
    }
    time.sleep(3)  # past the 2 s TTL by the storage's push times (no way to age an S3 object)
    ctl = RegistryControl(reg) if caps.garbage_collect else None
    try:
        cfg = write_config(
            tmp_path / "regkeeper.yaml",
            [matrix_entry(reg, ctl)],
            tiers=TIERS,
            expire={"registry": "m", "maxDeleteFraction": 1.0},
            stateDir=str(tmp_path / "state"),
        )
        dry = expire(config_path=str(cfg), dry_run=True)
        assert dry["status"] == "dry-run", dry["notes"]
        assert dry["summary"]["repositories to remove"] == 2
        assert {"ci/build-1", "ci/build-2"} <= set(images.catalog(reg.url))

        res = expire(config_path=str(cfg))
        assert res["status"] == "ok", res["notes"]
        for repo, tag in temp:
            assert images.head_manifest(reg.url, repo, pushed[(repo, tag)].digest) is None, (repo, tag)
        assert sorted(images.list_tags(reg.url, "base/os")) == ["1.0", "2.0"]
        assert whole(reg, "base/os", "1.0") and whole(reg, "base/os", "2.0")

        if not caps.garbage_collect:
            # memory registry, no storage access, no reclaim: the tags are gone, nothing more to do
            assert "repositories removed" not in res["summary"]
            return
        assert sorted(res["summary"]["repositories removed"]) == ["ci/build-1", "ci/build-2"]
        assert [r for r in images.catalog(reg.url) if r.startswith("ci/")] == []
        for img in pushed.values():
            assert not blob_stored(reg, img.layer_digests[1]), img.layer_digests[1]
            assert not blob_stored(reg, img.config_digest)
        for img in base:
            for d in img.layer_digests + [img.config_digest]:
                assert blob_stored(reg, d), d
        # writable again, and the removed repository name can be pushed to afresh
        images.push_image(reg.url, "ci/build-1", "again", seed="again", verify=False)
        assert images.list_tags(reg.url, "ci/build-1") == ["again"]
    finally:
        if ctl is not None:
            ctl.stop()
