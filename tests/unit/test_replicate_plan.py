"""Replication planning logic, pure: tag selection, diff, delete scope, cap, ordering, retries."""

import pytest

from regkeeper.config import ReplicationRule, TagFilter, parse_config
from regkeeper.errors import AuthError, DigestMismatchError, NotFoundError, RegistryError
from regkeeper.replicate import (
    ReplicationPlan,
    RepoPlan,
    TagCopy,
    check_delete_cap,
    copy_phases,
    diff_tags,
    extraneous_tags,
    select_tags,
    source_repository,
    tag_matches,
    target_repository,
)
from regkeeper.retry import is_transient

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
D4 = "sha256:" + "4" * 64
C1 = "sha256:" + "c" * 64  # a child of an index
S1 = "sha256:" + "a" * 64  # signature manifests
S2 = "sha256:" + "b" * 64
S3 = "sha256:" + "e" * 64


def sig(digest: str, kind: str = "sig") -> str:
    return digest.replace(":", "-") + "." + kind


ALL = TagFilter()


# ---------------------------------------------------------------- names


def test_target_repository_prefix():
    assert target_repository("", "library/nginx") == "library/nginx"
    assert target_repository("eu", "library/nginx") == "eu/library/nginx"
    assert target_repository("/eu/west/", "app") == "eu/west/app"


def test_source_repository_inverse_and_outside_prefix():
    assert source_repository("eu", "eu/library/nginx") == "library/nginx"
    assert source_repository("eu", "us/library/nginx") is None
    assert source_repository("eu", "europe/app") is None  # a sibling, not under eu/
    assert source_repository("eu", "eu") is None
    assert source_repository("", "x/y") == "x/y"


# ---------------------------------------------------------------- tag selection


def test_tag_filter_include_exclude():
    f = TagFilter(include=["v*", "latest"], exclude=["*-rc*"])
    assert tag_matches("v1.2", f)
    assert tag_matches("latest", f)
    assert not tag_matches("v2.0-rc1", f)
    assert not tag_matches("dev", f)


def test_signatures_follow_their_subjects_not_the_tag_filter():
    tags = {"v1": D1, "dev": D2, sig(D1): S1, sig(D1, "att"): S2, sig(D2): S3}
    got = select_tags(tags, TagFilter(include=["v*"]))
    # v1 selected, so its .sig and .att come along although "sha256-..." does not match v*
    assert got == {"v1": D1, sig(D1): S1, sig(D1, "att"): S2}
    # dev is filtered out, and so is its signature
    assert sig(D2) not in got


def test_signature_excluded_with_subject_even_if_filter_matches_it():
    tags = {"v1": D1, "dev": D2, sig(D2): S3}
    got = select_tags(tags, TagFilter(include=["*"], exclude=["dev"]))
    assert got == {"v1": D1}


def test_orphan_signature_judged_by_filter():
    orphan = "sha256:" + "9" * 64
    tags = {"v1": D1, sig(orphan): S1}
    assert sig(orphan) in select_tags(tags, ALL)
    assert sig(orphan) not in select_tags(tags, TagFilter(include=["v*"]))


def test_signature_of_index_child_follows_index():
    tags = {"v1": D1, sig(C1): S1}
    looked = []

    def children_of(d):
        looked.append(d)
        return [C1] if d == D1 else []

    got = select_tags(tags, TagFilter(include=["v*"]), children_of)
    assert got == {"v1": D1, sig(C1): S1}
    assert looked == [D1]
    # no lookups when every signature's subject is a tag digest
    looked.clear()
    select_tags({"v1": D1, sig(D1): S1}, TagFilter(include=["v*"]), children_of)
    assert looked == []


def test_signature_of_signature_follows_chain():
    tags = {"v1": D1, sig(D1): S1, sig(S1): S2}
    got = select_tags(tags, TagFilter(include=["v1"]))
    assert got == tags


# ---------------------------------------------------------------- diff


def test_diff_missing_different_in_sync():
    src = {"a": D1, "b": D2, "c": D3}
    dst = {"a": D1, "b": D4}
    to_copy, in_sync = diff_tags(src, dst)
    assert in_sync == ["a"]
    assert [(c.tag, c.reason, c.target_digest) for c in to_copy] == [
        ("b", "different", D4),
        ("c", "missing", None),
    ]


def test_diff_nothing_to_do():
    to_copy, in_sync = diff_tags({"a": D1}, {"a": D1, "extra": D2})
    assert to_copy == [] and in_sync == ["a"]


def test_copy_phases_signatures_last():
    items = [TagCopy(sig(D1), S1), TagCopy("v1", D1), TagCopy("v2", D2), TagCopy(sig(D2, "sbom"), S2)]
    first, later = copy_phases(items)
    assert [c.tag for c in first] == ["v1", "v2"]
    assert [c.tag for c in later] == [sig(D1), sig(D2, "sbom")]


# ---------------------------------------------------------------- extraneous


def test_extraneous_only_inside_tag_scope():
    target = {"v1": D1, "v0": D2, "dev": D3}
    deletable, kept, scope = extraneous_tags(target, {"v1": D1}, TagFilter(include=["v*"]))
    assert deletable == [("v0", D2)]
    assert kept == []
    assert scope == 2  # "dev" is outside the rule's scope: never counted
    assert all(t != "dev" for t, _ in deletable)


def test_extraneous_never_deletes_digest_shared_with_kept_tag():
    # "old" and "dev" point to the same digest; dev is out of scope and stays. A DELETE by
    # digest would take dev with it, so old is kept and the reason says why.
    target = {"v1": D1, "old": D2, "dev": D2}
    deletable, kept, _ = extraneous_tags(target, {"v1": D1}, TagFilter(include=["v*", "old"]))
    assert deletable == []
    assert kept[0][0] == "old" and "dev" in kept[0][1]


def test_extraneous_retag_on_source_is_not_deleted():
    # The source renamed old -> new (same digest): new is about to be copied, so deleting
    # old's digest would remove new right after copying it.
    target = {"old": D1}
    deletable, kept, _ = extraneous_tags(target, {"new": D1}, ALL)
    assert deletable == []
    assert kept and "replicated" in kept[0][1]


def test_extraneous_protects_children_of_kept_index():
    target = {"v1": D1, "platform-amd64": C1}
    deletable, kept, _ = extraneous_tags(
        target, {"v1": D1}, ALL, children_of=lambda d: [C1] if d == D1 else []
    )
    assert deletable == []
    assert "child" in kept[0][1]


def test_extraneous_signatures_die_with_subject():
    target = {"v1": D1, "gone": D2, sig(D2): S1, sig(D1): S2}
    deletable, _, scope = extraneous_tags(target, {"v1": D1, sig(D1): S2}, TagFilter(include=["v*", "gone"]))
    assert sorted(deletable) == sorted([("gone", D2), (sig(D2), S1)])
    assert scope == 4


def test_extraneous_out_of_scope_signature_untouched():
    target = {"v1": D1, "dev": D2, sig(D2): S1}
    deletable, _, scope = extraneous_tags(target, {}, TagFilter(include=["v*"]))
    assert deletable == [("v1", D1)]
    assert scope == 1


def test_subject_of_kept_signature_is_not_deleted():
    # source still has sha256-D2.sig (its subject untagged there): the replica keeps D2
    target = {"gone": D2, sig(D2): S1}
    deletable, kept, _ = extraneous_tags(target, {sig(D2): S1}, ALL)
    assert deletable == []
    assert "subject" in kept[0][1]


# ---------------------------------------------------------------- cap


def _plan(extraneous: int, scope: int) -> ReplicationPlan:
    p = ReplicationPlan(rule="r", source="a", target="b", prefix="", delete_extraneous=True)
    rp = RepoPlan("x", "x", extraneous=[(f"t{i}", D1) for i in range(extraneous)], scope_tags=scope)
    p.repositories.append(rp)
    return p


def test_delete_cap():
    assert check_delete_cap(_plan(0, 10)) is None
    assert check_delete_cap(_plan(5, 10)) is None  # 50% is at the cap
    why = check_delete_cap(_plan(6, 10))
    assert why and "6/10 tags (60%)" in why and "--force" in why
    assert "deleteExtraneous would delete" in why and "rule r -> target b" in why
    assert "more than 50% (maxDeleteFraction of replication rule r)" in why
    assert check_delete_cap(_plan(6, 10), force=True) is None
    assert check_delete_cap(_plan(2, 10), max_fraction=0.1) is not None


# ---------------------------------------------------------------- transient errors


def test_transient_classification():
    """Replicate has no decision of its own: the one in regkeeper.retry (the transport retries
    the calls, the blob transfer restarts a broken stream; items are never retried)."""
    import regkeeper.replicate as rep

    assert not hasattr(rep, "is_transient") and not hasattr(rep, "TRANSIENT_STATUSES")
    assert is_transient(RegistryError("x", status=503))
    assert is_transient(RegistryError("x", status=429))
    # the transport marks a connection-level failure (no status) transient when it maps it
    assert is_transient(RegistryError("cannot connect", transient=True))
    assert not is_transient(AuthError("x", status=401))
    assert not is_transient(DigestMismatchError("x"))
    assert not is_transient(RegistryError("bad", status=400))
    assert not is_transient(RegistryError("x", status=500))  # 500 is permanent now
    assert not is_transient(NotFoundError("x", status=404, url="http://r/v2/a/manifests/b"))
    # a forgotten upload session is no longer retried per item: the next run copies the item
    assert not is_transient(NotFoundError("x", status=404, url="http://r/v2/a/blobs/uploads/uuid"))
    assert not is_transient(ValueError("x"))


# ---------------------------------------------------------------- config shape


def test_rule_from_config_keys():
    cfg = parse_config("""
mirrorRepositories:
- {name: primary, url: http://127.0.0.1:5000}
- {name: eu, url: http://127.0.0.1:5001}
- {name: us, url: http://127.0.0.1:5002}
replication:
- from: primary
  to: [eu, us]
  include: ["team-*/**"]
  exclude: ["tmp/**"]
  tags: {include: ["v*"], exclude: ["*-rc*"]}
  prefix: region-eu
  deleteExtraneous: true
  concurrency: 4
""")
    r: ReplicationRule = cfg.replication[0]
    assert r.to == ["eu", "us"] and r.prefix == "region-eu" and r.delete_extraneous
    assert r.rule_name == "primary-to-eu+us"
    assert target_repository(r.prefix, "team-a/api") == "region-eu/team-a/api"


@pytest.mark.parametrize("tag", ["sha256-" + "0" * 64 + ".sig", "sha256-" + "f" * 64 + ".sbom"])
def test_signature_tags_recognised(tag):
    assert copy_phases([TagCopy(tag, S1)])[1]


def test_extraneous_keeps_grandchildren_of_a_kept_index_and_referrers_subjects():
    from regkeeper.config import TagFilter
    from regkeeper.replicate import extraneous_tags

    A, B, C, X = ("sha256:" + ch * 64 for ch in "abcx")
    children = {A: [B], B: [C]}
    # keep -> index A -> index B -> C; "old" -> C is gone from the source but C is still needed
    deletable, kept, _ = extraneous_tags(
        {"keep": A, "old": C}, {"keep": A}, TagFilter(), children_of=lambda d: children.get(d, [])
    )
    assert deletable == [] and kept[0][0] == "old" and "child of kept index" in kept[0][1]
    # a referrers-schema tag (sha256-<hex>, no suffix) lives and dies with its subject
    ref_tag = "sha256-" + "x" * 64
    deletable, kept, _ = extraneous_tags({"v1": X, ref_tag: C}, {}, TagFilter())
    assert sorted(t for t, _ in deletable) == sorted(["v1", ref_tag])
