"""Referrers in the plan (issue 12): every referrer, however it was found (a cosign tag, the
sha256-<hex> fallback index, a manifest with ``subject``, tagged or not), lives and dies with
its subject, never takes a keepLast slot and never keeps an expired subject alive."""

from datetime import timedelta

from regkeeper.models import OCI_MANIFEST
from regkeeper.policy import gc_resolver, plan, tier_resolver
from tests.unit.test_policy import NOW, by_tag, dg, hexof, image, index, inv, repo, sig_tag


def _sbom(name: str, subject: str):
    m = image(name, subject=subject, media_type=OCI_MANIFEST)
    m.artifact_type = "application/spdx+json"
    return m


def test_tagged_referrer_does_not_keep_an_old_subject_alive():
    """oras-py on a registry without the API: an SBOM tagged sbom-1.0 whose subject is a
    120-day-old image. The young SBOM neither takes the keepLast slot nor keeps its subject (or
    the subject's signature) alive: all three go, the new image stays."""
    ms = [image("old"), image("new"), _sbom("sbom", "old"), image("sig-old")]
    tags = {"1.0": "old", "2.0": "new", "sbom-1.0": "sbom", sig_tag("old"): "sig-old"}
    pushed = {"1.0": 120, "2.0": 40, "sbom-1.0": 1, sig_tag("old"): 120}
    r = repo("app", ms, tags, pushed=pushed)
    p = plan(inv(r), gc_resolver(["**"], [], 30, 1, []), now=NOW, max_delete_fraction=1.0)
    t = by_tag(p)
    assert t["2.0"].action == "keep" and t["2.0"].reason == "among newest 1"
    assert t["1.0"].action == "delete"
    assert t["sbom-1.0"].action == "delete" and t["sbom-1.0"].reason.startswith("referrer of deleted")
    assert t[sig_tag("old")].action == "delete"
    order = [d for _, d in p.manifests_to_delete()]
    assert set(order) == {dg("old"), dg("sbom"), dg("sig-old")}
    assert order.index(dg("sbom")) < order.index(dg("old"))
    assert order.index(dg("sig-old")) < order.index(dg("old"))


def test_keep_last_ranks_images_only():
    ms = [image("a"), image("b"), image("c"), _sbom("sbom-c", "c")]
    tags = {"a": "a", "b": "b", "c": "c", "sbom-c": "sbom-c"}
    r = repo("app", ms, tags, pushed={"a": 100, "b": 90, "c": 80, "sbom-c": 1})
    p = plan(inv(r), gc_resolver(["**"], [], 30, 2, []), now=NOW, max_delete_fraction=1.0)
    t = by_tag(p)
    assert (t["a"].action, t["b"].action, t["c"].action) == ("delete", "keep", "keep")
    assert t["sbom-c"].action == "keep" and t["sbom-c"].reason.startswith("referrer of kept")


def test_young_untagged_referrer_in_grace_does_not_keep_its_subject():
    """The untagged grace period protects a push in progress, not an old image: a referrer of a
    present subject follows it."""
    ms = [image("old"), image("new"), _sbom("sbom", "old")]
    r = repo("app", ms, {"1.0": "old", "2.0": "new"}, pushed={"1.0": 120, "2.0": 1}, untagged=["sbom"])
    r.untagged_pushed = {dg("sbom"): NOW - timedelta(minutes=5)}
    p = plan(inv(r), gc_resolver(["**"], [], 30, 1, []), now=NOW, max_delete_fraction=1.0)
    assert {d for _, d in p.manifests_to_delete()} == {dg("old"), dg("sbom")}


def test_protected_referrer_keeps_its_subject():
    """One kept for its own sake (a protect glob, in use) keeps its subject: no orphan."""
    ms = [image("old"), image("new"), _sbom("sbom", "old")]
    tags = {"1.0": "old", "2.0": "new", "sbom-1.0": "sbom"}
    r = repo("app", ms, tags, pushed={"1.0": 120, "2.0": 1, "sbom-1.0": 120})
    p = plan(inv(r), gc_resolver(["**"], [], 30, 1, ["sbom-*"]), now=NOW, max_delete_fraction=1.0)
    assert p.manifests_to_delete() == []


def test_orphan_referrer_reason_and_fallback_index_of_a_gone_subject():
    ms = [image("new"), _sbom("orphan", "gone"), image("sig-gone"), index("refs-gone", ["orphan"])]
    tags = {
        "2.0": "new",
        "orphan-sbom": "orphan",
        sig_tag("gone"): "sig-gone",
        f"sha256-{hexof('gone')}": "refs-gone",
    }
    r = repo("app", ms, tags, pushed=dict.fromkeys(tags, 1))
    p = plan(inv(r), gc_resolver(["**"], [], 30, 5, []), now=NOW, max_delete_fraction=1.0)
    t = by_tag(p)
    why = f"orphan referrer: subject sha256:{hexof('gone')[:12]} is gone"
    assert t["orphan-sbom"].action == "delete" and t["orphan-sbom"].reason == why
    assert t[sig_tag("gone")].reason == why
    assert t[f"sha256-{hexof('gone')}"].reason == why
    assert t["2.0"].action == "keep"


def test_expire_keep_forever_tier_keeps_orphans_ttl_tier_follows_subject():
    base = repo(
        "base/app",
        [image("x"), _sbom("orphan", "gone")],
        {"1": "x", "o": "orphan"},
        pushed={"1": 900, "o": 900},
    )
    tmp = repo(
        "tmp/app",
        [image("t-old"), image("t-new"), _sbom("t-sbom", "t-old")],
        {"old": "t-old", "new": "t-new", "sbom": "t-sbom"},
        pushed={"old": 5, "new": 1, "sbom": 0.01},
    )
    tiers = [
        {"name": "base", "match": ["base/**"], "keep": "forever"},
        {"name": "temp", "match": ["tmp/**"], "ttl": "72h"},
    ]
    p = plan(inv(base, tmp), tier_resolver(tiers), now=NOW, max_delete_fraction=1.0)
    assert by_tag(p, "base/app")["o"].action == "keep"
    t = by_tag(p, "tmp/app")
    assert t["old"].action == "delete" and t["sbom"].action == "delete" and t["new"].action == "keep"
