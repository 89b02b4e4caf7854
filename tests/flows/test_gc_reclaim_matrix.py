"""gc with its reclaim on every registry of the matrix (issue 12): distribution 2.8 on a
filesystem and on S3 (moto), distribution 3 on a filesystem, and the referrers-API registry
(memory only, no garbage-collect: there gc deletes and the reclaim mode is ``none``).

The same repository everywhere: two protected images and two that gc deletes, all four sharing
one base layer. The preview is exact, the deletes are exactly the plan, the registry's own
garbage-collect runs inside the read-only window and frees what the preview said (within 5%),
the shared layer and every blob of a kept image survive, and the unique layers of the deleted
images are gone from the storage itself (files, or S3 objects)."""

from tests.support import images
from tests.support.matrixcfg import blob_stored, layer, matrix_entry, whole
from tests.support.rkconfig import RegistryControl, write_config

REPO = "team/app"


def test_gc_and_reclaim_on_every_registry(registry_matrix, tmp_path):
    from flows.gc import gc

    reg = registry_matrix
    caps = reg.capabilities
    shared = layer(1)
    pushed = {
        tag: images.push_image(reg.url, REPO, tag, layers=[shared, layer(10 + i)], seed=tag, verify=False)
        for i, tag in enumerate(["keep-1", "keep-2", "old-1", "old-2"])
    }
    ctl = RegistryControl(reg) if caps.garbage_collect else None
    try:
        cfg = write_config(
            tmp_path / "regkeeper.yaml",
            [matrix_entry(reg, ctl)],
            gc={"registry": "m", "days": 0, "keepLast": 0, "protect": ["keep-*"], "maxDeleteFraction": 0.9},
            stateDir=str(tmp_path / "state"),
        )
        dry = gc(config_path=str(cfg), dry_run=True)
        assert dry["status"] == "dry-run", dry["notes"]
        assert sorted(images.list_tags(reg.url, REPO)) == ["keep-1", "keep-2", "old-1", "old-2"]
        preview = dry["summary"]["bytes freed (preview)"]
        gone = pushed["old-1"], pushed["old-2"]
        # exact: the two unique layers, two configs and two manifests; never the shared layer
        unique = [d for img in gone for d in (img.layer_digests[1], img.config_digest)]
        assert preview == sum(img.size_total - len(shared) for img in gone)

        res = gc(config_path=str(cfg))
        assert res["status"] == "ok", res["notes"]
        assert res["summary"]["deletes ok"] == 2 and res["summary"]["deletes failed"] == 0
        assert sorted(images.list_tags(reg.url, REPO)) == ["keep-1", "keep-2"]
        for img in gone:
            assert images.head_manifest(reg.url, REPO, img.digest) is None
        assert whole(reg, REPO, "keep-1") and whole(reg, REPO, "keep-2")
        assert res["summary"]["verify problems"] == 0

        if not caps.garbage_collect:
            # the referrers-API registry has no garbage-collect: nothing to reclaim, said so
            assert res["summary"].get("reclaim") in (None, "none (not run)")
            return
        assert ctl.calls == ["readonly", "readwrite"]
        assert res["summary"]["reclaim"] == "command (ran)"
        measured = res["summary"]["bytes freed (measured)"]
        assert abs(measured - preview) <= 0.05 * preview, (measured, preview)
        for d in unique:
            assert not blob_stored(reg, d), d
        assert blob_stored(reg, pushed["keep-1"].layer_digests[0])  # the shared layer
        for tag in ("keep-1", "keep-2"):
            for d in pushed[tag].layer_digests + [pushed[tag].config_digest]:
                assert blob_stored(reg, d), (tag, d)
        # writable again after the window
        images.push_image(reg.url, REPO, "after", seed="after", verify=False)
    finally:
        if ctl is not None:
            ctl.stop()
