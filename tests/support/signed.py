"""A signed image with SBOMs, made by the real tools, and what the tools see of it: shared by
the matrix tests of replication and backup/restore (test_matrix_referrers_*.py)."""

import json

from tests.support import images
from tests.support.ocitools import digest_tag

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"


def sbom(name: str, media: str = SPDX) -> dict[str, tuple[bytes, str]]:
    doc = {"spdxVersion": "SPDX-2.3", "name": name, "SPDXID": "SPDXRef-DOCUMENT"}
    return {"sbom.json": (json.dumps(doc).encode(), media)}


def sign_and_attach(src, repo: str, oras, cosign, seed: str) -> images.PushedImage:
    """An image with four referrers on ``src``: an SPDX SBOM attached by oras in its own mode
    (the referrers API where the registry has it, else the sha256-<hex> fallback tag), a
    CycloneDX SBOM forced into the fallback tag mode, a cosign OCI 1.1 signature and a cosign
    legacy signature (the sha256-<hex>.sig tag)."""
    img = images.push_image(src.url, repo, "v1", media="oci", seed=seed)
    subject = src.ref(repo, img.digest)
    oras.attach(subject, SPDX, sbom("auto"))
    oras.attach(subject, CYCLONEDX, sbom("tag", CYCLONEDX), mode="tag")
    cosign.sign(subject, mode="oci-1-1")
    cosign.sign(subject, mode="legacy")
    return img


def tree(regctl, reg, repo: str, digest: str) -> dict[str, list[tuple[str, str]]]:
    regctl.plain_http(reg.host)
    return {k: sorted(v) for k, v in regctl.tree(reg.ref(repo, digest)).referrer_map().items()}


def assert_replica_verifies(src, dst, repo: str, img, cosign, regctl) -> None:
    """The replica's referrers: what the tools see there equals the source's (``src``: a
    registry, or the tree read from it earlier), and both cosign signatures verify against the
    replica."""
    want = src if isinstance(src, dict) else tree(regctl, src, repo, img.digest)
    assert len(want[img.digest]) == 3  # spdx, cyclonedx, the OCI 1.1 signature
    assert tree(regctl, dst, repo, img.digest) == want
    replica = dst.ref(repo, img.digest)
    for mode in ("oci-1-1", "legacy"):
        payloads = cosign.verify(replica, mode=mode)
        assert [p["critical"]["image"]["docker-manifest-digest"] for p in payloads] == [img.digest]
    regctl.plain_http(dst.host)
    assert f"{digest_tag(img.digest)}.sig" in regctl.tree(replica, digest_tags=True).digest_tags()
