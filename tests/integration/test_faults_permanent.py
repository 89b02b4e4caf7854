"""A permanent fault names exactly the failed items; everything else is copied / backed up.

Persistent 403 / 404 / 500 answers on single manifests and blobs (fault proxy, ``times=`` far
beyond the attempts) during replicate and backup, several at once: the run fails (or reports
failures) naming exactly those repositories/tags with the digest that failed, and nothing else
is missing. Ground truth is read straight from the registries (tests/support/images.py).
"""

import pytest

from regkeeper import backup as B
from regkeeper.config import ReplicationRule
from regkeeper.replicate import plan_replication, replicate_target
from tests.integration.test_faults_rate import client
from tests.support import images
from tests.support.sample import fill, truth

V = {"verify": False}
FOREVER = 10_000


@pytest.fixture
def src(registry_factory):
    reg = registry_factory()
    return reg, fill(reg.url)


def rule() -> ReplicationRule:
    return ReplicationRule.model_validate({"from": "primary", "to": ["replica"]})


def sig_tag(digest: str, kind: str = "sig") -> str:
    return digest.replace(":", "-") + f".{kind}"


def test_replicate_permanent_faults_fail_exactly_their_items(
    src, registry_factory, fault_proxy_factory, tmp_path
):
    (src_reg, p), dst_reg = src, registry_factory()
    want = truth(src_reg.url)
    sproxy, dproxy = fault_proxy_factory(src_reg.url), fault_proxy_factory(dst_reg.url)
    a, b, c, d = p["many"][1], p["many"][6], p["many"][12], p["many"][18]
    child = p["index"].children[1]
    # source: the tag of a cannot be read (403); b's own layer answers 500, c's own layer 404
    # (the tag still points at c: an incomplete source image, not a tag that vanished); one
    # child of the OCI index answers 500. target: d's tag PUT is refused (403), and every
    # upload into big/app (403)
    sproxy.add_fault(
        "status", status=403, method="GET", path_regex=rf"/v2/{a.repo}/manifests/{a.tag}$", times=FOREVER
    )
    sproxy.add_fault(
        "status", status=500, method="GET", path_regex=rf"/blobs/{b.layer_digests[-1]}$", times=FOREVER
    )
    sproxy.add_fault(
        "status", status=404, method="GET", path_regex=rf"/blobs/{c.layer_digests[-1]}$", times=FOREVER
    )
    sproxy.add_fault(
        "status", status=500, method="GET", path_regex=rf"/manifests/{child.digest}$", times=FOREVER
    )
    dproxy.add_fault(
        "status", status=403, method="PUT", path_regex=rf"/v2/{d.repo}/manifests/{d.tag}$", times=FOREVER
    )
    dproxy.add_fault(
        "status", status=403, method="POST", path_regex=r"^/v2/big/app/blobs/uploads/", times=FOREVER
    )
    s, t = client(sproxy.url, "primary", tmp_path), client(dproxy.url, "replica", tmp_path)

    res = replicate_target(s, t, rule(), "replica", backoff=0.02, verify=True)

    assert res.status == "failed"
    failed = {(repo, tag): why for repo, tag, why in res.failed_items}
    idx_sigs = {("multi/oci", sig_tag(p["index"].digest)), ("multi/oci", sig_tag(p["index"].digest, "att"))}
    assert (
        set(failed)
        == {
            (a.repo, a.tag),
            (b.repo, b.tag),
            (c.repo, c.tag),
            (d.repo, d.tag),
            ("multi/oci", "v1"),
            ("big/app", "v1"),
        }
        | idx_sigs
    )
    why_a = failed[(a.repo, a.tag)]
    assert "HTTP 403" in why_a and f"GET /v2/{a.repo}/manifests/{a.tag}" in why_a
    assert f"blob {b.layer_digests[-1]}" in failed[(b.repo, b.tag)] and "HTTP 500" in failed[(b.repo, b.tag)]
    assert f"blob {c.layer_digests[-1]}" in failed[(c.repo, c.tag)] and "404" in failed[(c.repo, c.tag)]
    assert "incomplete" in failed[(c.repo, c.tag)]
    assert "HTTP 403" in failed[(d.repo, d.tag)] and "registry 'replica'" in failed[(d.repo, d.tag)]
    assert child.digest in failed[("multi/oci", "v1")] and "HTTP 500" in failed[("multi/oci", "v1")]
    assert (
        f"blob {p['big'].layer_digests[0]}" in failed[("big/app", "v1")]
        or f"blob {p['big'].config_digest}" in failed[("big/app", "v1")]
    )
    assert all("subject" in failed[k] for k in idx_sigs)
    assert not any(r.vanished for r in res.repositories)
    # everything else is on the target with the source digest; the failed ones are not
    got = truth(dst_reg.url)
    assert {k: v for k, v in want.items() if k not in failed} == {k: got[k] for k in want if k not in failed}
    assert not set(failed) & set(got)
    # every failed item cost the transport's attempts once, never attempts x items x restarts
    gets_b = [r for r in sproxy.requests if r.method == "GET" and r.path.endswith(b.layer_digests[-1])]
    assert len(gets_b) == 1  # 500 is permanent: sent once


def test_replicate_tag_deleted_from_the_source_after_the_plan_vanishes(src, registry_factory, tmp_path):
    """The other side of the 404 rule above: a tag deleted on the source between plan and copy
    is reported as vanished, not failed, and the run is ok."""
    (src_reg, p), dst_reg = src, registry_factory()
    s, t = client(src_reg.url, "primary", tmp_path), client(dst_reg.url, "replica", tmp_path)
    plan = plan_replication(s, t, rule(), "replica")
    gone = p["many"][7]
    assert images.delete_manifest(src_reg.url, gone.repo, gone.digest, **V) == 202
    src_reg.garbage_collect()  # its own layer is gone from the source too
    res = replicate_target(s, t, rule(), "replica", plan=plan, backoff=0.02)
    assert res.status == "ok", res.failed_items
    assert [(r.source_repo, r.vanished) for r in res.repositories if r.vanished] == [(gone.repo, [gone.tag])]
    assert truth(dst_reg.url) == truth(src_reg.url)


def test_backup_permanent_faults_name_exactly_their_items(src, fault_proxy_factory, tmp_path):
    (reg, p) = src
    before = truth(reg.url)
    proxy = fault_proxy_factory(reg.url)
    a, b, c = p["many"][2], p["many"][8], p["many"][14]
    child = p["list"].children[0]
    # a's tag: 403; b's config blob: 500; the Docker list's first child: 500; c's config: 404
    proxy.add_fault(
        "status", status=403, method="GET", path_regex=rf"/v2/{a.repo}/manifests/{a.tag}$", times=FOREVER
    )
    proxy.add_fault(
        "status", status=500, method="GET", path_regex=rf"/blobs/{b.config_digest}$", times=FOREVER
    )
    proxy.add_fault(
        "status", status=500, method="GET", path_regex=rf"/manifests/{child.digest}$", times=FOREVER
    )
    proxy.add_fault(
        "status", status=404, method="GET", path_regex=rf"/blobs/{c.config_digest}$", times=FOREVER
    )
    root = tmp_path / "backups"
    store = B.open_target(f"file://{root}", None)
    cl = client(proxy.url, "primary", tmp_path)

    with pytest.raises(B.BackupError) as ei:
        B.backup(cl, store)

    msg = str(ei.value)
    assert "3 item(s) could not be backed up" in msg, msg
    assert f"{a.repo}:{a.tag}: " in msg and "HTTP 403" in msg
    assert f"config blob {b.config_digest} of {b.repo}:{b.tag}: " in msg and "HTTP 500" in msg
    assert f"manifest {child.digest} of multi/docker:v1: " in msg
    assert f"{c.repo}:{c.tag}" not in msg  # a 404 is left out and noted, not a failure
    assert B.list_snapshots(store, "primary") == []  # no snapshot claims to be complete
    # everything else was copied: every manifest and config of every other tag is on the target
    failed_tags = {(a.repo, a.tag), (b.repo, b.tag), (c.repo, c.tag), ("multi/docker", "v1")}
    on_target = set(B.list_existing(store))
    for img in p["many"] + [p["image"], p["big"]] + p["index"].children:
        if (img.repo, img.tag) not in failed_tags:
            assert B.object_key("manifests", img.digest) in on_target, (img.repo, img.tag)
            assert B.object_key("blobs", img.config_digest) in on_target, (img.repo, img.tag)

    # the faults clear: the next run writes a complete snapshot
    proxy.clear_faults()
    res = B.backup(cl, store)
    assert {
        (r, t): dg for r, rec in res.snapshot.repositories.items() for t, dg in rec["tags"].items()
    } == before
    assert res.errors == []
