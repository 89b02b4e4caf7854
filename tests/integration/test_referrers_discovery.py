"""Referrers discovery in the one OCI client (regkeeper/oci/referrers.py) on every registry of
the matrix, against what the real tools wrote: oras attach (API where the registry has it, the
sha256-<hex> fallback index everywhere when forced) and regctl's view of the same subject."""

import json

from regkeeper.oci import RegistryClient
from regkeeper.oci.referrers import fallback_tag
from tests.support import images

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"


def _sbom(name: str) -> dict[str, tuple[bytes, str]]:
    doc = {"spdxVersion": "SPDX-2.3", "name": name, "SPDXID": "SPDXRef-DOCUMENT"}
    return {"sbom.spdx.json": (json.dumps(doc).encode(), SPDX)}


def test_mode_detected_once_and_referrers_equal_the_tools_view(registry_matrix, oras, regctl, unique_repo):
    reg = registry_matrix
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    other = images.push_image(reg.url, unique_repo, "v2", media="oci", seed=unique_repo + "-2")
    subject = reg.ref(unique_repo, img.digest)
    auto = oras.attach(subject, SPDX, _sbom("auto"))
    forced = oras.attach(subject, CYCLONEDX, _sbom("tag"), mode="tag")

    client = RegistryClient(reg.name, reg.url, verify=False)
    assert client.referrers_mode is None
    found = client.referrers(unique_repo, img.digest)
    expected_mode = "api" if reg.capabilities.referrers_api else "tag-schema"
    assert client.referrers_mode == expected_mode
    assert found.found_by == expected_mode

    regctl.plain_http(reg.host)
    tree = dict(regctl.tree(subject).referrer_map()[img.digest])
    mine = {d.digest: d.artifact_type for d in found.descriptors}
    if reg.capabilities.referrers_api:
        # the API lists both (the forced fallback entry is a manifest with a subject too)
        assert mine == tree == {auto["digest"]: SPDX, forced["digest"]: CYCLONEDX}
        assert found.fallback is None
    else:
        assert mine == tree == {auto["digest"]: SPDX, forced["digest"]: CYCLONEDX}
        assert found.fallback is not None and found.fallback.kind == "index"

    # the artifactType filter, applied by the registry or by us
    only = client.referrers(unique_repo, img.digest, artifact_type=CYCLONEDX)
    assert [d.digest for d in only.descriptors] == [forced["digest"]]
    # a subject without referrers: an empty list, not an error, in either mode
    assert client.referrers(unique_repo, other.digest).descriptors == ()
    # detection happened once: later calls in tag-schema mode never ask the API again
    reg.clear_access_log()
    client.referrers(unique_repo, img.digest)
    paths = [e.path for e in reg.access_log()]
    assert any("/referrers/" in p for p in paths) == reg.capabilities.referrers_api
    assert any(fallback_tag(img.digest) in p for p in paths) != reg.capabilities.referrers_api


def test_fallback_index_updated_in_place_and_emptied(registry_matrix, oras, unique_repo):
    """update_fallback_index removes an entry and re-PUTs the index under the same tag; when the
    last entry goes, nothing is PUT and the caller gets None (it deletes the old index)."""
    reg = registry_matrix
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    subject = reg.ref(unique_repo, img.digest)
    a = oras.attach(subject, SPDX, _sbom("a"), mode="tag")
    b = oras.attach(subject, CYCLONEDX, _sbom("b"), mode="tag")
    client = RegistryClient(reg.name, reg.url, verify=False)

    before, new = client.update_fallback_index(unique_repo, img.digest, remove=frozenset({a["digest"]}))
    assert before is not None and {d.digest for d in before.children} == {a["digest"], b["digest"]}
    assert new is not None and new != before.digest
    left = client.fallback_index(unique_repo, img.digest)
    assert left is not None and left.digest == new
    assert [d.digest for d in left.children] == [b["digest"]]
    assert [d.artifact_type for d in left.children] == [CYCLONEDX]  # the entry kept as it was

    # adding one already listed changes nothing; removing the last leaves the index as it was
    same, digest = client.update_fallback_index(
        unique_repo, img.digest, add=(json.loads(left.raw)["manifests"][0],)
    )
    assert digest == left.digest
    last, gone = client.update_fallback_index(unique_repo, img.digest, remove=frozenset({b["digest"]}))
    assert gone is None and last is not None and last.digest == left.digest
    assert client.fallback_index(unique_repo, img.digest).digest == left.digest  # not touched
