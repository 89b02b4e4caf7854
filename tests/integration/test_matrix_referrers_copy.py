"""Referrers travel with their subjects through replication (and backup/restore: see
test_matrix_referrers_restore.py), on every registry of the matrix, with the real tools.

On the source: an image, an SPDX SBOM attached by oras in its own mode (the referrers API where
the registry has it, else the sha256-<hex> fallback tag), a CycloneDX SBOM forced into the
fallback tag mode, a cosign OCI 1.1 signature (API or fallback tag, as cosign decides) and a
cosign legacy signature (the sha256-<hex>.sig tag). After replication, on the replica:
``cosign verify`` passes in both modes and ``regctl artifact tree`` equals the source's; a
second run copies nothing; deleteExtraneous deletes an extraneous subject with its referrers
and never a referrer whose subject is kept.

Pairs: every matrix registry to a fresh registry of the same kind, and across modes
referrers-api -> dist28-fs, dist28-fs -> referrers-api, referrers-api -> dist3-fs.
"""

import json
import uuid
from collections import Counter

import pytest

from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import replicate_target
from tests.support import images
from tests.support.matrix import MatrixRegistry
from tests.support.ocitools import digest_tag
from tests.support.signed import SPDX, assert_replica_verifies, sbom, sign_and_attach, tree

WRITES = {"PUT", "POST", "PATCH", "DELETE"}


def client(reg, name: str) -> RegistryClient:
    return RegistryClient(name, reg.url, verify=False, retries=2, backoff=0.02)


def rule(**kw) -> ReplicationRule:
    data = {"from": "primary", "to": ["replica"], "maxDeleteFraction": 1.0}
    data.update(kw)
    return ReplicationRule.model_validate(data)


@pytest.fixture
def same_kind(request, tmp_path):
    """``make(kind) -> MatrixRegistry``: a fresh registry of a matrix kind (the target)."""
    made: list[MatrixRegistry] = []

    def make(kind: str) -> MatrixRegistry:
        if kind in ("dist28-fs", "dist28-s3"):
            factory = request.getfixturevalue("registry_factory")
            if kind == "dist28-fs":
                reg = MatrixRegistry(kind, lambda: factory())
            else:
                moto = request.getfixturevalue("moto_server")
                bucket = moto.create_bucket(f"target-{uuid.uuid4().hex[:12]}")
                reg = MatrixRegistry(kind, lambda: factory(storage="s3", s3=moto.s3_config(bucket)))
        elif kind == "dist3-fs":
            factory = request.getfixturevalue("dist3_factory")
            reg = MatrixRegistry(kind, lambda: factory())
        else:
            factory = request.getfixturevalue("referrers_registry_factory")
            reg = MatrixRegistry(kind, lambda: factory())
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.stop()


def replicate_and_check(src, dst, repo, img, cosign, regctl) -> dict:
    """Cold run, verify on the replica, warm run (nothing copied), deleteExtraneous (nothing
    deleted). Returns request figures."""
    s, d = client(src, "primary"), client(dst, "replica")
    res = replicate_target(s, d, rule(), "replica", verify=True)
    assert res.status == "ok", res.failed_items
    t = res.totals()
    assert t["failed"] == 0 and t["referrers_failed"] == 0
    # every referrer the source lists is reported as carried (api, tag-schema or cosign-tag)
    carried = {(dg, by) for r in res.repositories for _, dg, _, by in r.referrers_copied}
    assert len({dg for dg, _ in carried}) >= 4, carried
    assert res.plan.source_referrers_mode == ("api" if src.capabilities.referrers_api else "tag-schema")
    assert res.plan.target_referrers_mode == ("api" if dst.capabilities.referrers_api else "tag-schema")
    assert_replica_verifies(src, dst, repo, img, cosign, regctl)

    # a second run copies nothing: no write reaches the target
    s2, d2 = client(src, "primary"), client(dst, "replica")
    dst.clear_access_log()
    src.clear_access_log()
    warm = replicate_target(s2, d2, rule(), "replica", verify=True)
    assert warm.status == "ok" and warm.totals()["copied"] == 0
    assert warm.totals()["referrers_copied"] == 0 and warm.plan.referrers == 0
    dst_log, src_log = dst.access_log(), src.access_log()
    assert [e for e in dst_log if e.method in WRITES] == []
    figures = {
        "source tags": len(images.list_tags(src.url, repo)),
        "cold source requests": sum(Counter(res.plan.stats["source_requests"]).values()),
        "warm source requests": len(src_log),
        "warm target requests": len(dst_log),
    }

    # deleteExtraneous: the replica's referrers (and any sha256-<hex> index the copy built)
    # belong to a kept subject: nothing is extraneous
    keep = replicate_target(
        client(src, "primary"), client(dst, "replica"), rule(deleteExtraneous=True), "replica"
    )
    assert keep.status == "ok", keep.failed_items
    assert keep.totals()["deleted"] == 0 and keep.totals()["referrers_deleted"] == 0
    assert tree(regctl, dst, repo, img.digest) == tree(regctl, src, repo, img.digest)
    return figures


def extraneous_subject_goes_with_its_referrers(src, dst, repo, oras, cosign, regctl) -> None:
    """v2 and its referrers replicated, then v2 deleted on the source: deleteExtraneous deletes
    v2 on the replica and its referrers before it; v1's referrers stay."""
    v2 = images.push_image(src.url, repo, "v2", media="oci", seed=repo + "-v2")
    oras.attach(src.ref(repo, v2.digest), SPDX, sbom("v2"))
    res = replicate_target(client(src, "primary"), client(dst, "replica"), rule(), "replica")
    assert res.status == "ok", res.failed_items
    gone = [dg for dg, _ in tree(regctl, dst, repo, v2.digest)[v2.digest]]
    assert len(gone) == 1
    # on the source, v2 goes with its referrers (as regkeeper's gc deletes them): the fallback
    # index first where there is one, then the SBOM, then v2
    index = images.head_manifest(src.url, repo, digest_tag(v2.digest))
    for dg in ([index] if index else []) + [dg for dg, _ in tree(regctl, src, repo, v2.digest)[v2.digest]]:
        assert images.delete_manifest(src.url, repo, dg) == 202
    assert images.delete_manifest(src.url, repo, v2.digest) == 202
    before = {t for t in images.list_tags(dst.url, repo) if t != "v2" and v2.digest.split(":")[1] not in t}
    res = replicate_target(
        client(src, "primary"), client(dst, "replica"), rule(deleteExtraneous=True), "replica"
    )
    assert res.status == "ok", res.failed_items
    assert images.head_manifest(dst.url, repo, v2.digest) is None
    for dg in gone:
        assert images.head_manifest(dst.url, repo, dg) is None, "a referrer outlived its subject"
    assert set(images.list_tags(dst.url, repo)) == before


def test_replica_of_each_matrix_registry_verifies(
    registry_matrix, same_kind, oras, cosign, regctl, unique_repo
):
    src = registry_matrix
    dst = same_kind(src.name)
    img = sign_and_attach(src, unique_repo, oras, cosign, unique_repo)
    figures = replicate_and_check(src, dst, unique_repo, img, cosign, regctl)
    print(f"\n{src.name} -> {dst.name}: {figures}")
    extraneous_subject_goes_with_its_referrers(src, dst, unique_repo, oras, cosign, regctl)


@pytest.mark.parametrize(
    "pair", [("referrers-api", "dist28-fs"), ("dist28-fs", "referrers-api"), ("referrers-api", "dist3-fs")]
)
def test_replica_across_referrers_modes_verifies(pair, same_kind, oras, cosign, regctl, unique_repo):
    src, dst = same_kind(pair[0]), same_kind(pair[1])
    img = sign_and_attach(src, unique_repo, oras, cosign, unique_repo)
    figures = replicate_and_check(src, dst, unique_repo, img, cosign, regctl)
    print(f"\n{src.name} -> {dst.name}: {figures}")
    extraneous_subject_goes_with_its_referrers(src, dst, unique_repo, oras, cosign, regctl)


def test_a_referrer_put_before_its_subject_is_accepted(registry_matrix, unique_repo):
    """Why the copy order (subject, then its referrers) is a choice, not a need: every registry
    of the matrix takes a referrer whose subject does not exist (yet); the one with the API
    answers OCI-Subject and lists it under that digest already."""
    import requests

    reg = registry_matrix
    missing = {"mediaType": images.OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 100}
    images.push_blob(reg.url, unique_repo, b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "artifactType": SPDX,
            "config": {"mediaType": images.OCI_EMPTY, "digest": images.EMPTY_JSON_DIGEST, "size": 2},
            "layers": [{"mediaType": images.OCI_EMPTY, "digest": images.EMPTY_JSON_DIGEST, "size": 2}],
            "subject": missing,
        }
    ).encode()
    digest = images.sha256_digest(body)
    r = requests.put(
        f"{reg.url}/v2/{unique_repo}/manifests/{digest}",
        data=body,
        headers={"Content-Type": images.OCI_MANIFEST},
    )
    assert r.status_code == 201
    found = client(reg, "reg").referrers(unique_repo, missing["digest"])
    assert [d.digest for d in found.descriptors] == ([digest] if reg.capabilities.referrers_api else [])
