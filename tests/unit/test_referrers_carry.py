"""Referrers with their subjects, the pure parts: which target tags stay (a referrer is part of
its subject), which source tags a mode pair copies, what a copied tag carried, referrer jobs,
the restore summary counting referrers apart from tags, and the OCI error 404 of a fresh
repository read as the API being there."""

from collections import Counter

from regkeeper.backup.restore_result import (
    ACTION_PRESENT,
    ACTION_RESTORED,
    RestoreResult,
    RestoreRow,
)
from regkeeper.config import TagFilter
from regkeeper.oci.manifest import Descriptor, Manifest
from regkeeper.oci.referrers import _repository_unknown, descriptor_dict
from regkeeper.replicate import RepoPlan, extraneous_tags
from regkeeper.replicate.referrers import ReferrerCopy, drop_fallback_tags, referrer_jobs, tagged_referrers

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
S1 = "sha256:" + "a" * 64
X1 = "sha256:" + "b" * 64
FALLBACK = "sha256-" + "1" * 64


def test_a_referrer_of_a_kept_subject_is_never_extraneous():
    # the replica's sha256-<hex> index (built from the source's API list) and an old .sig tag:
    # neither is on the source, both refer to v1, which stays
    target = {"v1": D1, FALLBACK: X1, FALLBACK + ".sig": S1}
    deletable, kept, scope = extraneous_tags(target, {"v1": D1}, TagFilter())
    assert deletable == [] and scope == 3
    assert sorted(t for t, _ in kept) == [FALLBACK, FALLBACK + ".sig"]
    assert all("of kept subject" in why for _, why in kept)


def test_referrers_of_a_deleted_subject_go_with_it():
    target = {"v1": D1, "v2": D2, FALLBACK: X1}
    deletable, _, _ = extraneous_tags(target, {"v2": D2}, TagFilter())
    assert sorted(t for t, _ in deletable) == sorted(["v1", FALLBACK])


def test_fallback_tags_are_not_copied_from_an_api_source_to_a_target_without():
    selected = {"v1": D1, FALLBACK: X1, FALLBACK + ".sig": S1}
    assert drop_fallback_tags(selected, "api", "tag-schema") == {"v1": D1, FALLBACK + ".sig": S1}
    for modes in (("api", "api"), ("tag-schema", "api"), ("tag-schema", "tag-schema"), (None, None)):
        assert drop_fallback_tags(selected, *modes) == selected


def test_what_a_copied_tag_carried():
    child = Descriptor(
        "application/vnd.oci.image.manifest.v1+json", S1, 10, artifact_type="application/spdx+json"
    )
    index = Manifest(
        digest=X1,
        media_type="application/vnd.oci.image.index.v1+json",
        kind="index",
        raw=b"{}",
        children=[child],
    )
    assert tagged_referrers(FALLBACK, index) == [(D1, S1, "application/spdx+json", "tag-schema")]
    sig = Manifest(
        digest=S1, media_type="application/vnd.oci.image.manifest.v1+json", kind="artifact", raw=b"{}"
    )
    assert tagged_referrers(FALLBACK + ".sig", sig) == [(D1, S1, "sig", "cosign-tag")]
    assert tagged_referrers("v1", sig) == []


def test_referrer_jobs_one_per_subject_parents_first():
    rp = RepoPlan("a", "a")
    rp.referrers = [
        ReferrerCopy(D1, S1, X1, "t", "api", {}, level=2),
        ReferrerCopy(D1, D1, S1, "t", "api", {}, level=1),
        ReferrerCopy(D2, D2, "sha256:" + "c" * 64, "t", "api", {}, level=1),
    ]
    jobs = referrer_jobs([rp, RepoPlan("b", "b", errors=["x"])])
    assert [(s, [r.digest for r in items]) for _, s, items in jobs] == [
        (D1, [S1, X1]),
        (D2, ["sha256:" + "c" * 64]),
    ]


def test_descriptor_dict_keeps_artifact_type_and_annotations():
    d = Descriptor("m", D1, 5, artifact_type="a", annotations={"k": "v"})
    assert descriptor_dict(d) == {
        "mediaType": "m",
        "digest": D1,
        "size": 5,
        "artifactType": "a",
        "annotations": {"k": "v"},
    }
    assert descriptor_dict(Descriptor("m", D1, 5)) == {"mediaType": "m", "digest": D1, "size": 5}


def test_an_oci_error_404_means_the_api_exists():
    assert _repository_unknown({"errors": [{"code": "NAME_UNKNOWN", "message": "Unknown name"}]})
    assert not _repository_unknown(None)  # "404 page not found": no such route
    assert not _repository_unknown({"errors": "x"})


def test_restore_summary_counts_referrers_apart_from_tags():
    rows = [RestoreRow("a", "v1", D1, ACTION_RESTORED, state="missing")]
    ref = RestoreRow("a", "(referrer)", S1, ACTION_RESTORED, state="missing")
    ref.kind = "referrer"
    old = RestoreRow("a", "(referrer)", X1, ACTION_PRESENT, state="present")
    old.kind = "referrer"
    res = RestoreResult(
        "s", "reg", False, rows + [ref, old], Counter(), referrers=[{}, {}, {}], referrers_mode="api"
    )
    s = res.summary()
    assert s["tags in snapshot"] == 1 and s["restored"] == 1
    assert s["referrers in snapshot"] == 3 and s["untagged referrers (api)"] == 2
    assert s["referrers restored"] == 1 and s["referrers already present"] == 1
    assert s["referrers mode"] == "api"
    assert "descriptor" not in ref.to_dict()
