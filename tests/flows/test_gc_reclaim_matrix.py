"""gc with its reclaim on every registry of the matrix (issue 12): distribution 2.8 on a
filesystem and on S3 (moto), distribution 3 on a filesystem, and the referrers-API registry
(memory only, no garbage-collect: there gc deletes and the reclaim mode is ``none``).

The same repository everywhere: two protected images and two that gc deletes, all four sharing
one base layer. The preview is exact, the deletes are exactly the plan, the registry's own
garbage-collect runs inside the read-only window and frees what the preview said (within 5%),
the shared layer and every blob of a kept image survive, and the unique layers of the deleted
images are gone from the storage itself (files, or S3 objects)."""

import json
import random

import requests

from tests.support import images
from tests.support.rkconfig import RegistryControl, write_config

REPO = "team/app"
UNIQUE = 300_000  # bytes per unique layer: the link files' overhead stays far below 5%


def _layer(seed: int, n: int = UNIQUE) -> bytes:
    return random.Random(seed).randbytes(n)


def _entry(reg, request, ctl: RegistryControl | None) -> dict:
    e: dict = {"name": "m", "url": reg.url, "retries": 3, "timeout": "20s"}
    kind = reg.capabilities.storage_kind
    if kind == "filesystem":
        e["storage"] = {"type": "directory", "path": str(reg.root)}
    elif kind == "s3":
        s3 = reg.server.s3
        e.update(
            type="s3",
            endpoint=s3["endpoint"],
            accessKey=s3["access_key"],
            secretKey=s3["secret_key"],
            bucket=s3["bucket"],
            region=s3.get("region", "us-east-1"),
        )
    if ctl is not None:
        e["reclaim"] = {
            **ctl.reclaim_config(),
            # the registry's own binary and config; the S3 driver must not see the sandbox's CA bundle
            "garbageCollect": [
                "env",
                "-u",
                "AWS_CA_BUNDLE",
                reg.server.binary,
                "garbage-collect",
                str(reg.config_path),
            ],
        }
    return e


def _blob_stored(reg, request, digest: str) -> bool:
    kind = reg.capabilities.storage_kind
    if kind == "filesystem":
        return reg.blob_path(digest).exists()
    moto = request.getfixturevalue("moto_server")
    hexd = digest.split(":")[1]
    key = f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
    found = moto.client().list_objects_v2(Bucket=reg.server.s3["bucket"], Prefix=key)
    return found.get("KeyCount", 0) > 0


def _whole(reg, repo: str, tag: str) -> bool:
    m = images.head_manifest(reg.url, repo, tag)
    if m is None:
        return False
    raw, _, _ = images.get_manifest(reg.url, repo, tag)
    doc = json.loads(raw)
    blobs = [doc["config"]["digest"]] + [x["digest"] for x in doc["layers"]]
    return all(_blob_answers(reg, repo, d) for d in blobs)


def _blob_answers(reg, repo: str, digest: str) -> bool:
    # distribution on S3 answers a blob GET with a redirect to the bucket: followed
    with requests.get(f"{reg.url}/v2/{repo}/blobs/{digest}", timeout=10, verify=False, stream=True) as r:
        return r.status_code == 200


def test_gc_and_reclaim_on_every_registry(registry_matrix, request, tmp_path):
    from flows.gc import gc

    reg = registry_matrix
    caps = reg.capabilities
    shared = _layer(1)
    pushed = {
        tag: images.push_image(reg.url, REPO, tag, layers=[shared, _layer(10 + i)], seed=tag, verify=False)
        for i, tag in enumerate(["keep-1", "keep-2", "old-1", "old-2"])
    }
    ctl = RegistryControl(reg) if caps.garbage_collect else None
    try:
        cfg = write_config(
            tmp_path / "regkeeper.yaml",
            [_entry(reg, request, ctl)],
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
        assert _whole(reg, REPO, "keep-1") and _whole(reg, REPO, "keep-2")
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
            assert not _blob_stored(reg, request, d), d
        assert _blob_stored(reg, request, pushed["keep-1"].layer_digests[0])  # the shared layer
        for tag in ("keep-1", "keep-2"):
            for d in pushed[tag].layer_digests + [pushed[tag].config_digest]:
                assert _blob_stored(reg, request, d), (tag, d)
        # writable again after the window
        images.push_image(reg.url, REPO, "after", seed="after", verify=False)
    finally:
        if ctl is not None:
            ctl.stop()
