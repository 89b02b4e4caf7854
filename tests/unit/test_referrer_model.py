"""The one referrer model (regkeeper/referrers.py): every referrer linked to its subject with how
it was discovered, and the inventory's rows and JSON showing the links."""

import json

from regkeeper.models import OCI_INDEX, OCI_MANIFEST, Descriptor, ManifestInfo
from regkeeper.referrers import COSIGN_TYPES, api_subjects, link_referrers
from tests.unit.test_policy import dg, hexof, image, inv, repo

SPDX = "application/spdx+json"


def _repo():
    sbom = image("sbom", subject="img", media_type=OCI_MANIFEST)
    sbom.artifact_type = SPDX
    tagged = image("tagged", subject="img", media_type=OCI_MANIFEST)
    tagged.artifact_type = "application/vnd.example+json"
    idx = ManifestInfo(
        digest=dg("idx"),
        media_type=OCI_INDEX,
        kind="index",
        size=10,
        children=[Descriptor(OCI_MANIFEST, dg("sbom"), 1, artifact_type=SPDX)],
    )
    tags = {
        "v1": "img",
        f"sha256-{hexof('img')}.sig": "sig",
        f"sha256-{hexof('img')}": "idx",
        "sbom-1": "tagged",
    }
    return repo("app", [image("img"), image("sig"), sbom, tagged, idx], tags)


def test_every_referrer_linked_once_with_how_it_was_found():
    r = _repo()
    link_referrers(r)
    found = {ref.digest: (ref.discovered_by, ref.artifact_type, ref.tags) for ref in r.referrers[dg("img")]}
    assert found == {
        dg("sbom"): ("tag-schema", SPDX, ()),
        dg("sig"): ("cosign-tag", COSIGN_TYPES["sig"], (f"sha256-{hexof('img')}.sig",)),
        dg("tagged"): ("subject-field", "application/vnd.example+json", ("sbom-1",)),
    }
    assert r.fallback_indexes == {dg("img"): dg("idx")}
    assert api_subjects(r) == [dg("img")]  # not the referrers, not the fallback index
    # the API names what it lists first
    link_referrers(r, {dg("img"): (Descriptor(OCI_MANIFEST, dg("tagged"), 1, artifact_type="x/y"),)})
    assert r.referrer_of()[dg("tagged")].discovered_by == "api"


def test_rows_and_json_link_referrer_to_subject():
    r = _repo()
    link_referrers(r)
    i = inv(r)
    rows = {row["tag"]: row for row in i.rows()}
    sig = rows[f"sha256-{hexof('img')}.sig"]
    assert (sig["signature_of"], sig["subject"], sig["discovered_by"]) == (dg("img"), dg("img"), "cosign-tag")
    assert rows["sbom-1"]["subject"] == dg("img") and rows["sbom-1"]["signature_of"] == ""
    assert rows[f"sha256-{hexof('img')}"]["referrer_type"] == "referrers-index"
    assert rows["v1"]["subject"] == ""
    doc = json.loads(i.to_json())["repositories"]["app"]["manifests"]
    assert doc[dg("sig")]["subject"] == dg("img") and doc[dg("sig")]["referrer_type"] == COSIGN_TYPES["sig"]
    assert {x["digest"] for x in doc[dg("img")]["referrers"]} == {dg("sbom"), dg("sig"), dg("tagged")}
    assert doc[dg("img")]["referrers_index"] == dg("idx") and doc[dg("img")]["subject"] is None
