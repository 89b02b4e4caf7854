"""deleteExtraneous through the one delete path, between two real distribution 2.8 registries.

Reference-depth order (recorded by the fault proxy, which logs a request before the client sees
its answer), tags re-read just before deleting (a repository changed since the plan is skipped),
404 = already gone, 405 = stop and say deletes are disabled, and the rule's own cap. Everything
the target keeps is read back with the test stack's independent client.
"""

import pytest

from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import build_report, plan_replication, replicate_target
from tests.support import images
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryServer


@pytest.fixture
def src_reg(tmp_path):
    reg = RegistryServer(tmp_path / "src")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def dst_reg(tmp_path):
    reg = RegistryServer(tmp_path / "dst")
    try:
        yield reg
    finally:
        reg.stop()


def client(url: str, name: str) -> RegistryClient:
    return RegistryClient(name, url, verify=False, retries=2, backoff=0.02, read_timeout=60)


def rule(**kw) -> ReplicationRule:
    data = {"from": "primary", "to": ["replica"], "deleteExtraneous": True}
    data.update(kw)
    return ReplicationRule.model_validate(data)


def tags_of(url: str, repo: str) -> dict[str, str]:
    return {
        t: images.head_manifest(url, repo, t, verify=False) for t in images.list_tags(url, repo, verify=False)
    }


def sig_tag(digest: str, kind: str = "sig") -> str:
    return digest.replace(":", "-") + (f".{kind}" if kind else "")


def test_signature_referrer_and_index_are_deleted_before_what_they_reference(src_reg, dst_reg):
    for i in range(4):
        images.push_image(src_reg.url, "app/x", f"v{i}", verify=False, seed=f"x{i}")
    r = rule(include=["app/**"], maxDeleteFraction=0.7)
    src = client(src_reg.url, "primary")
    assert replicate_target(src, client(dst_reg.url, "replica"), r, "replica").status == "ok"
    # on the target only: an image with a cosign signature, a tagged OCI referrer (subject
    # field) and its referrers-fallback index tag; a multi-arch index with one child tagged
    D = dst_reg.url
    old = images.push_image(D, "app/x", "old", media="oci", verify=False, seed="old")
    sig = images.push_signature(D, "app/x", old.digest, verify=False)
    ref = images.push_referrer(D, "app/x", old, tag="old-sbom", verify=False)
    fallback = images.head_manifest(D, "app/x", sig_tag(old.digest, ""), verify=False)
    multi = images.push_index(D, "app/x", "multi", verify=False, seed="m")
    child = multi.children[0].digest
    images.tag_existing(D, "app/x", "multi-amd64", child, verify=False)
    before = tags_of(D, "app/x")
    extraneous = {"old", sig_tag(old.digest), "old-sbom", sig_tag(old.digest, ""), "multi", "multi-amd64"}
    assert set(before) == extraneous | {"v0", "v1", "v2", "v3"}

    with FaultProxy(D) as proxy:
        res = replicate_target(src, client(proxy.url, "replica"), r, "replica")
        order = [rec.path.rsplit("/", 1)[1] for rec in proxy.requests if rec.method == "DELETE"]
    assert res.status == "ok", res.failed_items
    assert {t for x in res.repositories for t, _ in x.deleted} == extraneous
    # every planned digest once, referencing manifests first
    assert sorted(order) == sorted({old.digest, sig.digest, ref.digest, fallback, multi.digest, child})
    pos = order.index
    assert pos(sig.digest) < pos(old.digest)  # signature before its subject
    assert pos(ref.digest) < pos(old.digest)  # referrer before its subject
    assert pos(fallback) < pos(ref.digest) < pos(old.digest)  # referrers index before both
    assert pos(multi.digest) < pos(child)  # index before its child
    # what is NOT deleted: every tag the source still has, at the same digest
    after = tags_of(D, "app/x")
    assert after == {t: before[t] for t in ("v0", "v1", "v2", "v3")}
    assert after == tags_of(src_reg.url, "app/x")


def test_tag_pushed_onto_a_planned_digest_after_the_plan_skips_its_repository(src_reg, dst_reg):
    for repo in ("app/y", "app/z"):
        for i in range(2):
            images.push_image(src_reg.url, repo, f"v{i}", verify=False, seed=f"{repo}{i}")
    r = rule(include=["app/**"])
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, r, "replica").status == "ok"
    D = dst_reg.url
    old_y = images.push_image(D, "app/y", "old", verify=False, seed="oy")
    old_z = images.push_image(D, "app/z", "old", verify=False, seed="oz")

    plan = plan_replication(src, dst, r, "replica")
    assert {(p.target_repo, t) for p in plan.repositories for t, _ in p.extraneous} == {
        ("app/y", "old"),
        ("app/z", "old"),
    }
    images.tag_existing(D, "app/y", "hotfix", old_y.digest, verify=False)  # pushed after the plan
    before_y = tags_of(D, "app/y")
    dst_reg.clear_access_log()
    res = replicate_target(src, dst, r, "replica", plan=plan)

    assert res.status == "ok", res.failed_items
    by = {x.target_repo: x for x in res.repositories}
    assert by["app/y"].deleted == [] and by["app/y"].delete_failed == []
    [(tag, why)] = by["app/y"].delete_skipped
    assert tag == "old" and "hotfix" in why and "nothing deleted" in why
    assert by["app/z"].deleted == [("old", old_z.digest)]  # the other repository went ahead
    deletes = [e.path for e in dst_reg.access_log() if e.method == "DELETE"]
    assert deletes == [f"/v2/app/z/manifests/{old_z.digest}"]
    assert tags_of(D, "app/y") == before_y and before_y["hotfix"] == old_y.digest == before_y["old"]
    assert "old" not in tags_of(D, "app/z")
    rep = build_report(res, rule=r, source="primary", target="replica")
    assert rep.summary["delete skipped (changed since plan)"] == 1
    assert any(n.startswith("app/y: deletes skipped:") and "hotfix" in n for n in rep.notes)
    rows = {(row["target_repository"], row["tag"]): row for row in rep.table("deletes").rows}
    assert rows[("app/y", "old")]["outcome"] == "skipped" and "hotfix" in rows[("app/y", "old")]["reason"]
    assert rows[("app/z", "old")]["outcome"] == "deleted"


def test_a_digest_already_deleted_counts_as_already_gone(src_reg, dst_reg):
    for i in range(3):
        images.push_image(src_reg.url, "app/g", f"v{i}", verify=False, seed=f"g{i}")
    r = rule(include=["app/**"])
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, r, "replica").status == "ok"
    D = dst_reg.url
    gone = images.push_image(D, "app/g", "gone", verify=False, seed="gone")
    extra = images.push_image(D, "app/g", "extra", verify=False, seed="extra")
    plan = plan_replication(src, dst, r, "replica")
    assert images.delete_manifest(D, "app/g", gone.digest, verify=False) == 202  # someone beat us to it

    res = replicate_target(src, dst, r, "replica", plan=plan)
    assert res.status == "ok", res.failed_items
    [x] = res.repositories
    assert x.already_gone == [("gone", gone.digest)] and x.deleted == [("extra", extra.digest)]
    assert x.delete_failed == [] and res.failed_items == []
    assert res.totals()["already_gone"] == 1 and res.totals()["deleted"] == 1
    assert tags_of(D, "app/g") == tags_of(src_reg.url, "app/g")  # v0..v2 untouched
    rep = build_report(res, rule=r, source="primary", target="replica")
    assert rep.summary["already gone"] == 1 and rep.status == "ok"


def test_deletes_disabled_on_the_target_stop_everything_and_say_so(src_reg, tmp_path):
    dst_reg = RegistryServer(tmp_path / "nodelete", delete_enabled=False)
    try:
        for repo in ("app/a", "app/b"):
            for i in range(3):
                images.push_image(src_reg.url, repo, f"v{i}", verify=False, seed=f"{repo}{i}")
        r = rule(include=["app/**"], concurrency=1)
        src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
        assert replicate_target(src, dst, r, "replica").status == "ok"
        D = dst_reg.url
        for repo in ("app/a", "app/b"):
            images.push_image(D, repo, "old1", verify=False, seed=f"{repo}o1")
            images.push_image(D, repo, "old2", verify=False, seed=f"{repo}o2")
        before = {repo: tags_of(D, repo) for repo in ("app/a", "app/b")}
        dst_reg.clear_access_log()

        res = replicate_target(src, dst, r, "replica")

        deletes = [e for e in dst_reg.access_log() if e.method == "DELETE"]
        assert len(deletes) == 1 and deletes[0].status == 405  # nothing more attempted
        assert res.status == "failed"
        assert "deletes are disabled" in res.deletes_stopped
        assert "storage.delete.enabled" in res.deletes_stopped
        failed = [(x.target_repo, t, why) for x in res.repositories for t, why in x.delete_failed]
        assert len(failed) == 4 and all(x.deleted == [] for x in res.repositories)
        assert sum("not attempted" in why for _, _, why in failed) == 3
        assert {repo: tags_of(D, repo) for repo in before} == before
        rep = build_report(res, rule=r, source="primary", target="replica")
        assert rep.status == "failed"
        assert any(n.startswith("deletes stopped:") and "deletes are disabled" in n for n in rep.notes)
    finally:
        dst_reg.stop()


def test_the_rules_own_cap_applies(src_reg, dst_reg):
    for i in range(10):
        images.push_image(src_reg.url, "cap/app", f"v{i}", verify=False, seed=f"c{i}")
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, rule(include=["cap/**"]), "replica").status == "ok"
    for i in range(3):  # the source drops 3 of 10 tags: 30%
        d = images.head_manifest(src_reg.url, "cap/app", f"v{i}", verify=False)
        images.delete_manifest(src_reg.url, "cap/app", d, verify=False)
    before = tags_of(dst_reg.url, "cap/app")

    strict = rule(name="to-eu", include=["cap/**"], maxDeleteFraction=0.2)
    dst_reg.clear_access_log()
    res = replicate_target(src, dst, strict, "replica")
    assert res.status == "refused"
    why = res.deletes_refused
    assert "rule to-eu -> target replica" in why and "3/10 tags (30%)" in why
    assert "more than 20% (maxDeleteFraction of replication rule to-eu)" in why and "--force" in why
    assert [e for e in dst_reg.access_log() if e.method == "DELETE"] == []
    assert tags_of(dst_reg.url, "cap/app") == before

    res = replicate_target(src, dst, rule(include=["cap/**"], maxDeleteFraction=0.3), "replica")
    assert res.status == "ok" and res.totals()["deleted"] == 3  # 30% is at the cap
    assert tags_of(dst_reg.url, "cap/app") == tags_of(src_reg.url, "cap/app")
    for i in (3, 4):  # 2 of the 7 left: 29% > 20%, and force overrides
        d = images.head_manifest(src_reg.url, "cap/app", f"v{i}", verify=False)
        images.delete_manifest(src_reg.url, "cap/app", d, verify=False)
    assert replicate_target(src, dst, strict, "replica").status == "refused"
    res = replicate_target(src, dst, strict, "replica", force=True)
    assert res.status == "ok" and res.deletes_refused is None and res.totals()["deleted"] == 2
    assert sorted(tags_of(dst_reg.url, "cap/app")) == [f"v{i}" for i in range(5, 10)]
