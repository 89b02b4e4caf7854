"""Backup -> delete the repository's images -> restore carries referrers, on every registry of
the matrix, with the real tools (the signed image of tests/support/signed.py): after the
restore ``cosign verify`` passes in both modes and ``regctl artifact tree`` equals what it was
before the backup; a verify-restore (a dry run) finds everything present.

The referrers-api registry keeps everything in memory: a restart would wipe it, so "lose the
images" is done there, as everywhere, by deleting every manifest of the repository through the
registry's API (referrers first, then the subject); blobs stay (no registry of the matrix
reclaims blobs without an offline garbage-collect), so the restore needs no blobSource. Across
modes (a snapshot of referrers-api restored into dist28-fs) the blobs come from blobSource.
"""

import json

from regkeeper import backup as B
from regkeeper.oci import RegistryClient
from tests.support import images
from tests.support.ocitools import digest_tag
from tests.support.signed import assert_replica_verifies, sign_and_attach, tree


def client(reg, name: str) -> RegistryClient:
    return RegistryClient(name, reg.url, verify=False, retries=2, backoff=0.02)


def wipe(reg, repo: str, img, regctl) -> None:
    """Delete every manifest of the repository: referrers first, then the subject."""
    refs = [d for d, _ in tree(regctl, reg, repo, img.digest)[img.digest]]
    tagged = {images.head_manifest(reg.url, repo, t) for t in images.list_tags(reg.url, repo)}
    for d in refs + sorted(tagged - {img.digest} - set(refs)) + [img.digest]:
        assert images.delete_manifest(reg.url, repo, d) in (202, 404)
    # distribution 2.8 on S3 now and then leaves a tag listed after its manifest's DELETE (the
    # tag no longer resolves): what matters is that nothing resolves any more
    assert {t: images.head_manifest(reg.url, repo, t) for t in images.list_tags(reg.url, repo)} in (
        {},
        dict.fromkeys(images.list_tags(reg.url, repo)),
    )
    assert images.head_manifest(reg.url, repo, img.digest) is None


def test_restore_brings_back_verifiable_referrers(
    registry_matrix, oras, cosign, regctl, unique_repo, tmp_path
):
    reg = registry_matrix
    img = sign_and_attach(reg, unique_repo, oras, cosign, unique_repo)
    before = tree(regctl, reg, unique_repo, img.digest)
    store = B.FileStore(tmp_path / "backups")
    done = B.backup(client(reg, "reg"), store)
    untagged = 3 if reg.capabilities.referrers_api else 0  # spdx, cyclonedx, the OCI 1.1 signature
    found = {e["found_by"] for v in done.snapshot.referrers(unique_repo).values() for e in v}
    assert found == ({"api", "cosign-tag"} if untagged else {"tag-schema", "cosign-tag"})
    assert done.snapshot.data["format"] == B.FORMAT and done.snapshot.counts["referrers"] >= 4
    assert done.snapshot.data["referrers_mode"] == ("api" if untagged else "tag-schema")

    wipe(reg, unique_repo, img, regctl)
    res = B.restore(client(reg, "reg"), store, dry_run=False)
    assert res.failed == [], [(r.tag, r.reason) for r in res.failed]
    s = res.summary()
    # the CycloneDX SBOM is also an entry of the fallback index tag: back with that tag already
    assert s["referrers restored"] + s["referrers already present"] == untagged
    assert s["referrers cannot restore"] == 0
    assert s["referrers mode"] == ("api" if untagged else "tag-schema")
    assert {r["referrer"] for r in res.referrers} >= {d for d, _ in before[img.digest]}
    assert {r["action"] for r in res.referrers} <= {B.ACTION_RESTORED, B.ACTION_PRESENT}, res.referrers
    assert_replica_verifies(before, reg, unique_repo, img, cosign, regctl)

    # verify-restore: a dry run against the restored registry finds every tag and referrer there
    check = B.restore(client(reg, "reg"), store, dry_run=True)
    assert check.failed == [] and check.summary()["referrers already present"] == untagged
    assert {r.action for r in check.rows} == {B.ACTION_PRESENT}
    report = B.restore_report("reg", target=store.url, result=res)
    assert report.summary["referrers restored"] == s["referrers restored"]
    assert any(t.name == "referrers" and len(t.rows) >= 4 for t in report.tables)


def test_snapshot_of_the_api_registry_restores_into_one_without(
    referrers_registry_factory, registry_factory, oras, cosign, regctl, unique_repo, tmp_path
):
    """The untagged referrers of a referrers-API registry, restored into distribution 2.8: PUT
    after their subject and listed in the sha256-<hex> index the restore writes."""
    from tests.support.matrix import MatrixRegistry

    src = MatrixRegistry("referrers-api", lambda: referrers_registry_factory())
    dst = MatrixRegistry("dist28-fs", lambda: registry_factory())
    img = sign_and_attach(src, unique_repo, oras, cosign, unique_repo)
    before = tree(regctl, src, unique_repo, img.digest)
    store = B.FileStore(tmp_path / "backups")
    B.backup(client(src, "primary"), store)
    res = B.restore(
        client(dst, "replica"), store, registry="primary", dry_run=False, blob_source=client(src, "primary")
    )
    assert res.failed == [], [(r.tag, r.reason) for r in res.failed]
    s = res.summary()
    assert s["referrers restored"] + s["referrers already present"] == 3 and s["referrers restored"] >= 2
    assert s["referrers mode"] == "tag-schema"
    assert res.stats["fallback_indexes_put"] == 1
    assert digest_tag(img.digest) in images.list_tags(dst.url, unique_repo)
    assert_replica_verifies(before, dst, unique_repo, img, cosign, regctl)


def test_a_snapshot_written_before_referrers_still_restores(
    registry_factory, oras, cosign, regctl, unique_repo, tmp_path
):
    """A regkeeper-backup/1 index (no referrers fields) restores: its tags (the fallback index
    and cosign tags among them) come back, and the tools verify as before."""
    from tests.support.matrix import MatrixRegistry

    reg = MatrixRegistry("dist28-fs", lambda: registry_factory())
    img = sign_and_attach(reg, unique_repo, oras, cosign, unique_repo)
    before = tree(regctl, reg, unique_repo, img.digest)
    store = B.FileStore(tmp_path / "backups")
    snap = B.backup(client(reg, "reg"), store).snapshot
    old = dict(snap.data, format="regkeeper-backup/1")
    old.pop("referrers_mode")
    old["counts"] = {k: v for k, v in old["counts"].items() if k != "referrers"}
    old["repositories"] = {
        k: {f: v for f, v in rec.items() if f != "referrers"} for k, rec in old["repositories"].items()
    }
    store.put(snap.key, B.seal(old))
    assert "referrers" not in json.loads(store.get(snap.key))["repositories"][unique_repo]

    wipe(reg, unique_repo, img, regctl)
    res = B.restore(client(reg, "reg"), store, dry_run=False)
    assert res.failed == [] and res.summary()["referrers in snapshot"] == 0
    assert_replica_verifies(before, reg, unique_repo, img, cosign, regctl)
