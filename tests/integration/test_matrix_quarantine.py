"""Undoable deletes on every registry of the matrix (issue 14; filesystem and S3 storage, the
referrers API and the sha256-<hex> fallback index): gc with the quarantine on deletes an old
image with every kind of referrer (oras SBOM, fallback-index attestation, cosign legacy and
OCI 1.1 signatures, a tagged referrer); ``undo --apply`` brings every tag back with the same
digest, every referrer answers again, both cosign signatures verify, and what the tools see of
the referrers equals what they saw before the delete; the kept image is never touched. Where
the registry has a garbage-collect (both distributions, filesystem and S3), it runs after the
delete and reclaims none of the held blobs."""

import json
import subprocess

from regkeeper.context import RunContext
from regkeeper.quarantine.listing import read_records
from regkeeper.quarantine.undo import undo
from tests.integration.test_matrix_referrers import REG, _config, _run, referred  # noqa: F401 - fixture
from tests.support import images
from tests.support.matrixcfg import blob_stored, whole
from tests.support.ocitools import digest_tag
from tests.support.signed import tree


def test_gc_delete_is_undone_whole_with_its_signatures(referred, cosign, regctl, tmp_path):  # noqa: F811
    reg, repo, img, refs = referred
    before_tags = sorted(images.list_tags(reg.url, repo))
    before_tree = tree(regctl, reg, repo, img["old"])
    held_blobs = _blobs(reg, repo, [img["old"], *refs["old"].values()])
    cfg = _config(tmp_path, reg, "gc")
    cfg.write_text(cfg.read_text() + "quarantine:\n  window: 7d\n")
    ctx = RunContext.load(cfg)
    try:
        _, plan, deleted, rep = _run(ctx, "gc")
        assert not deleted.failed and rep.status == "ok", (deleted.failed, rep.notes)
        assert images.head_manifest(reg.url, repo, img["old"]) is None
        for digest in refs["old"].values():
            assert images.head_manifest(reg.url, repo, digest) is None
        if reg.capabilities.garbage_collect:  # the registry's own garbage-collect keeps them all
            gc_run = subprocess.run(
                ["env", "-u", "AWS_CA_BUNDLE", reg.server.binary, "garbage-collect", str(reg.config_path)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert gc_run.returncode == 0, gc_run.stderr
            assert [b for b in held_blobs if not blob_stored(reg, b)] == []
        client = ctx.client(REG)
        run = ctx.quarantine(REG).run
        [rec] = read_records(client, "regkeeper-quarantine")
        assert {e.digest for e in rec.entries} >= {img["old"], *refs["old"].values()}

        done = undo(client, ctx.config.quarantine, run, apply=True)
        assert not done.failed and not done.moved, done.failed
        after = images.list_tags(reg.url, repo)
        assert sorted(t for t in after if images.head_manifest(reg.url, repo, t)) == before_tags
        assert images.head_manifest(reg.url, repo, "1.0") == img["old"] and whole(reg, repo, "1.0")
        for name, digest in refs["old"].items():
            assert images.head_manifest(reg.url, repo, digest) == digest, name
        assert tree(regctl, reg, repo, img["old"]) == before_tree
        subject = reg.ref(repo, img["old"])
        for mode in ("legacy", "oci-1-1"):
            payloads = cosign.verify(subject, mode=mode)
            assert [p["critical"]["image"]["docker-manifest-digest"] for p in payloads] == [img["old"]]
        assert f"{digest_tag(img['old'])}.sig" in after
        assert images.head_manifest(reg.url, repo, "2.0") == img["new"] and whole(reg, repo, "2.0")
        assert read_records(client, "regkeeper-quarantine") == []
    finally:
        ctx.close()


def _blobs(reg, repo: str, digests: list[str]) -> list[str]:
    """Every blob (config, layers) of the manifests, read before they are deleted."""
    out = []
    for d in digests:
        doc = json.loads(images.get_manifest(reg.url, repo, d)[0])
        out += [b["digest"] for b in [doc.get("config"), *doc.get("layers", [])] if b]
    return sorted(set(out))
