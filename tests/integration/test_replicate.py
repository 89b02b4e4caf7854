"""Replication between two real distribution 2.8 registries on loopback.

The source is filled with the test stack's own pusher (raw requests, independent of regkeeper's
client); every assertion about the target is read back with that same independent client, and
write counts come from the target registry's own access log or the fault proxy's record.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import (
    Replicator,
    copy_repository,
    plan_replication,
    replicate_target,
    target_repository,
)
from tests.support import images
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryServer

ROOT = Path(__file__).resolve().parents[2]
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


# ---------------------------------------------------------------- fixtures / helpers


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
    return RegistryClient(name, url, verify=False, retries=3, backoff=0.02, read_timeout=60)


def rule(**kw) -> ReplicationRule:
    data = {"from": "primary", "to": ["replica"]}
    data.update(kw)
    return ReplicationRule.model_validate(data)


def tags_of(url: str, repo: str) -> dict[str, str]:
    """tag -> digest as the registry itself reports it (independent client)."""
    return {
        t: images.head_manifest(url, repo, t, verify=False) for t in images.list_tags(url, repo, verify=False)
    }


def state(url: str, repos=None) -> dict[str, dict[str, str]]:
    repos = repos if repos is not None else images.catalog(url, verify=False)
    return {r: tags_of(url, r) for r in repos}


def writes(entries) -> list:
    return [e for e in entries if e.method in WRITES]


def fill_source(url: str) -> dict:
    """Several repositories sharing a 3 MiB base layer, a multi-arch OCI index and a Docker
    manifest list (children untagged), signatures/attestations on an index and on an image,
    an OCI 1.1 referrer with its fallback referrers tag, and a tag alias."""
    pushed = images.push_many(
        url,
        n_repos=3,
        tags_per_repo=4,
        prefix="team/app",
        verify=False,
        base_layer_size=3 * 1024 * 1024,
        layer_size=4096,
        seed=7,
    )
    idx = images.push_index(url, "multi/oci", "v1", verify=False, seed="i1")
    lst = images.push_index(
        url,
        "multi/docker",
        "v1",
        media="docker",
        verify=False,
        seed="i2",
        platforms=(("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le")),
    )
    sig_idx = images.push_signature(url, "multi/oci", idx.digest, "sig", verify=False)
    att_idx = images.push_signature(url, "multi/oci", idx.digest, "att", verify=False)
    img = images.push_image(url, "signed/app", "v1", media="oci", verify=False, seed="s1")
    sig_img = images.push_signature(url, "signed/app", img.digest, "sig", verify=False)
    sbom_img = images.push_signature(url, "signed/app", img.digest, "sbom", verify=False)
    ref = images.push_referrer(url, "signed/app", img, verify=False)
    images.tag_existing(url, "signed/app", "latest", img.digest, verify=False)
    return {
        "many": pushed,
        "index": idx,
        "list": lst,
        "sig_idx": sig_idx,
        "att_idx": att_idx,
        "image": img,
        "sig_img": sig_img,
        "sbom_img": sbom_img,
        "referrer": ref,
        "base_layer": pushed[0].layer_digests[0],
    }


# ---------------------------------------------------------------- cold / warm


def test_cold_run_copies_everything_byte_identical_then_warm_run_writes_nothing(src_reg, dst_reg):
    pushed = fill_source(src_reg.url)
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    r = rule()
    dst_reg.clear_access_log()

    result = replicate_target(src, dst, r, "replica")

    assert result.status == "ok", result.failed_items
    want = state(src_reg.url)
    assert sum(len(t) for t in want.values()) == 3 * 4 + 3 + 1 + 5  # every kind pushed above
    assert state(dst_reg.url, list(want)) == want  # every source tag, same digest
    # manifests byte for byte, including the untagged index children
    for repo, tags in want.items():
        for digest in tags.values():
            body_s, ctype_s, _ = images.get_manifest(src_reg.url, repo, digest, verify=False)
            body_d, ctype_d, dig_d = images.get_manifest(dst_reg.url, repo, digest, verify=False)
            assert body_d == body_s and ctype_d == ctype_s and dig_d == digest
    for ix, repo in ((pushed["index"], "multi/oci"), (pushed["list"], "multi/docker")):
        for child in ix.children:
            assert images.head_manifest(dst_reg.url, repo, child.digest, verify=False) == child.digest
            for blob in child.layer_digests + [child.config_digest]:
                assert images.blob_exists(dst_reg.url, repo, blob, verify=False)
    # signatures and attestations arrived with their subjects
    sig_tag = pushed["index"].digest.replace(":", "-") + ".sig"
    assert images.head_manifest(dst_reg.url, "multi/oci", sig_tag, verify=False) == pushed["sig_idx"].digest

    # the shared 3 MiB base layer crossed the wire once and was mounted into the others
    log = dst_reg.access_log()
    base = pushed["base_layer"]
    uploads_of_base = [
        e for e in log if e.method == "PUT" and "/blobs/uploads/" in e.path and base in unquote(e.query)
    ]
    mounts_of_base = [
        e for e in log if e.method == "POST" and f"mount={base}" in unquote(e.query) and e.status == 201
    ]
    assert len(uploads_of_base) == 1
    assert len(mounts_of_base) == 2
    totals = result.totals()
    assert totals["blobs_mounted"] >= 2 and totals["bytes_mounted"] >= 2 * 3 * 1024 * 1024
    assert totals["copied"] == sum(len(t) for t in want.values()) and totals["lag"] == 0

    # warm run: reads only, nothing copied, not one write on the target
    dst_reg.clear_access_log()
    warm = replicate_target(src, dst, r, "replica")
    log = dst_reg.access_log()
    assert warm.status == "ok"
    assert warm.totals()["copied"] == 0 and warm.totals()["skipped"] == sum(len(t) for t in want.values())
    assert writes(log) == []
    assert {e.method for e in log} <= {"GET", "HEAD"}
    # cost: one tags list per repository + one HEAD per tag on the target
    heads = [e for e in log if e.method == "HEAD"]
    assert len(heads) == sum(len(t) for t in want.values())
    assert state(dst_reg.url, list(want)) == want


def test_only_what_differs_is_copied(src_reg, dst_reg):
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=3, prefix="svc/x", verify=False, seed=3)
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, rule(), "replica").status == "ok"

    moved = images.push_image(src_reg.url, "svc/x-0000", "build-0001", verify=False, seed="moved")
    new = images.push_image(src_reg.url, "svc/x-0001", "build-0009", verify=False, seed="new")
    plan = plan_replication(src, dst, rule(), "replica")
    assert [(p.source_repo, c.tag, c.reason) for p in plan.repositories for c in p.to_copy] == [
        ("svc/x-0000", "build-0001", "different"),
        ("svc/x-0001", "build-0009", "missing"),
    ]
    assert plan.lag == 2 and plan.in_sync == 5

    dst_reg.clear_access_log()
    res = replicate_target(src, dst, rule(), "replica")
    manifest_puts = sorted(
        e.path for e in dst_reg.access_log() if e.method == "PUT" and "/manifests/" in e.path
    )
    assert manifest_puts == ["/v2/svc/x-0000/manifests/build-0001", "/v2/svc/x-0001/manifests/build-0009"]
    assert res.totals()["copied"] == 2 and res.totals()["skipped"] == 5
    assert tags_of(dst_reg.url, "svc/x-0000")["build-0001"] == moved.digest
    assert tags_of(dst_reg.url, "svc/x-0001")["build-0009"] == new.digest


def test_rule_scope_prefix_and_tag_filters(src_reg, dst_reg):
    images.push_image(src_reg.url, "team-a/api", "v1", verify=False, seed=1)
    images.push_image(src_reg.url, "team-a/api", "v2-rc1", verify=False, seed=2)
    dev = images.push_image(src_reg.url, "team-a/api", "dev", verify=False, seed=3)
    v1 = images.head_manifest(src_reg.url, "team-a/api", "v1", verify=False)
    images.push_signature(src_reg.url, "team-a/api", v1, "sig", verify=False)
    images.push_signature(src_reg.url, "team-a/api", dev.digest, "sig", verify=False)
    images.push_image(src_reg.url, "team-a/tmp/scratch", "v1", verify=False, seed=4)
    images.push_image(src_reg.url, "other/svc", "v1", verify=False, seed=5)
    r = rule(
        include=["team-*/**"],
        exclude=["**/tmp/**"],
        tags={"include": ["v*"], "exclude": ["*-rc*"]},
        prefix="region-eu",
    )
    res = replicate_target(client(src_reg.url, "primary"), client(dst_reg.url, "replica"), r, "replica")
    assert res.status == "ok"
    assert sorted(images.catalog(dst_reg.url, verify=False)) == ["region-eu/team-a/api"]
    got = tags_of(dst_reg.url, "region-eu/team-a/api")
    assert got == {"v1": v1, v1.replace(":", "-") + ".sig": got[v1.replace(":", "-") + ".sig"]}
    assert target_repository(r.prefix, "team-a/api") == "region-eu/team-a/api"


def test_dry_run_plans_and_writes_nothing(src_reg, dst_reg):
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=2, prefix="d/app", verify=False)
    dst_reg.clear_access_log()
    res = replicate_target(
        client(src_reg.url, "primary"), client(dst_reg.url, "replica"), rule(), "replica", dry_run=True
    )
    assert res.status == "dry-run"
    assert res.plan.lag == 4 and res.totals()["lag"] == 4 and res.totals()["copied"] == 0
    assert writes(dst_reg.access_log()) == []
    assert images.catalog(dst_reg.url, verify=False) == []


# ---------------------------------------------------------------- failures


@pytest.fixture
def proxied(src_reg, dst_reg):
    proxy = FaultProxy(dst_reg.url)
    try:
        yield proxy
    finally:
        proxy.stop()


def _big_image(url: str, repo: str, tag: str, size: int, seed: int) -> images.PushedImage:
    layer = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return images.push_image(url, repo, tag, layers=[layer], verify=False, seed=seed)


def test_transient_faults_are_retried_and_the_run_completes(src_reg, dst_reg, proxied):
    big = _big_image(src_reg.url, "big/app", "v1", 6 * 1024 * 1024, 1)  # > 4 MiB: chunked PATCHes
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=3, prefix="small/app", verify=False, seed=2)
    idx = images.push_index(src_reg.url, "multi/app", "v1", verify=False)
    images.push_signature(src_reg.url, "multi/app", idx.digest, verify=False)
    # connection resets in the middle of a chunked upload (PATCH is never retried by the HTTP
    # layer: the blob transfer cancels the session and restarts the blob from a fresh source
    # stream), 503 and 429 on manifest PUTs, a reset on a read of the target (a tags list of the
    # plan: a fresh target repository gets no blob or manifest HEADs, see Replicator._fresh, and
    # no read-back of tags whose PUT answered their digest), a 502 on an upload POST (retried
    # by the HTTP layer; a 500 is permanent in the one retry decision)
    proxied.add_fault("reset", method="PATCH", times=2)
    proxied.add_fault("status", status=503, method="PUT", path_regex=r"/manifests/", times=2)
    proxied.add_fault("429", method="PUT", path_regex=r"/manifests/", times=1, retry_after=0)
    proxied.add_fault("reset", method="GET", path_regex=r"/tags/list", times=1)
    proxied.add_fault("status", status=502, method="POST", path_regex=r"/blobs/uploads/", times=1)
    src, dst = client(src_reg.url, "primary"), client(proxied.url, "replica")

    # the 2 PATCH resets land on the one chunked blob: 3 starts of it; 4 allowed
    res = replicate_target(
        src, dst, rule(), "replica", backoff=0.02, attempts=4, chunk_size=1024 * 1024, verify=True
    )

    assert proxied.pending_faults() == 0  # every fault was hit
    assert res.status == "ok", res.failed_items
    assert res.totals()["failed"] == 0
    assert sum(r.retries for r in res.repositories) == 2  # the big blob restarted twice
    assert dst.stats["retries"] >= 5  # the rest: the HTTP layer
    want = state(src_reg.url)
    assert state(dst_reg.url, list(want)) == want
    assert tags_of(dst_reg.url, "big/app")["v1"] == big.digest
    patches = [r for r in proxied.requests if r.method == "PATCH"]
    assert len(patches) >= 6 + 2  # 1 MiB chunks, restarted twice
    # each broken session was cancelled (DELETE on its upload location), none left open
    cancels = [r for r in proxied.requests if r.method == "DELETE" and "/blobs/uploads/" in r.path]
    assert len(cancels) == 2 and all(r.status == 204 for r in cancels)


def test_persistent_failure_names_exactly_the_failed_items_and_next_run_completes(src_reg, dst_reg, proxied):
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=3, prefix="p/app", verify=False, seed=5)
    idx = images.push_index(src_reg.url, "p/multi", "v1", verify=False, seed=6)
    sig = images.push_signature(src_reg.url, "p/multi", idx.digest, verify=False)
    images.push_image(src_reg.url, "p/multi", "v2", verify=False, seed=7)
    # the index tag PUT fails every time (503: retried by the HTTP layer, 4 attempts with
    # retries=3, and never again by the item); its signature must not be copied without it;
    # everything else goes through
    proxied.add_fault("status", status=503, method="PUT", path_regex=r"/v2/p/multi/manifests/v1$", times=100)
    src, dst = client(src_reg.url, "primary"), client(proxied.url, "replica")

    res = replicate_target(src, dst, rule(), "replica", backoff=0.02)

    assert res.status == "failed"
    sig_tag = idx.digest.replace(":", "-") + ".sig"
    failed = {(repo, tag) for repo, tag, _ in res.failed_items}
    assert failed == {("p/multi", "v1"), ("p/multi", sig_tag)}
    reasons = {tag: why for _, tag, why in res.failed_items}
    assert "HTTP 503" in reasons["v1"] and "after 4 attempts" in reasons["v1"]
    assert "subject" in reasons[sig_tag]
    put_v1 = [r for r in proxied.requests if r.method == "PUT" and r.path.endswith("/p/multi/manifests/v1")]
    assert len(put_v1) == 4  # attempts, not attempts x items
    # the others are there, the failed ones are not
    got = tags_of(dst_reg.url, "p/multi")
    assert "v1" not in got and sig_tag not in got and "v2" in got
    multi = [r for r in res.repositories if r.source_repo == "p/multi"][0]
    assert multi.lag_after == 2 and multi.copied == ["v2"]
    for repo in ("p/app-0000", "p/app-0001"):
        assert tags_of(dst_reg.url, repo) == tags_of(src_reg.url, repo)

    # the fault clears: the next run copies exactly what is still different
    proxied.clear_faults()
    proxied.clear()
    res2 = replicate_target(src, dst, rule(), "replica", backoff=0.02)
    assert res2.status == "ok", res2.failed_items
    assert res2.totals()["copied"] == 2
    tag_puts = sorted(
        r.path
        for r in proxied.requests
        if r.method == "PUT" and "/manifests/" in r.path and "sha256:" not in r.path
    )
    assert tag_puts == [f"/v2/p/multi/manifests/{sig_tag}", "/v2/p/multi/manifests/v1"]
    assert state(dst_reg.url, images.catalog(src_reg.url, verify=False)) == state(src_reg.url)
    assert tags_of(dst_reg.url, "p/multi")[sig_tag] == sig.digest


def test_persistent_503_on_one_blob_costs_exactly_the_attempts_and_fails_only_its_items(src_reg, dst_reg):
    """No stacked retries: the blob GET is tried ``retries + 1`` times by the transport, never
    again by the transfer or the item; every item that needs the blob fails, naming it."""
    shared = hashlib.sha256(b"shared").digest() * 2048  # 64 KiB, in 3 items
    bad = images.sha256_digest(shared)
    for repo, tag, seed in (("bad/app", "v1", 1), ("bad/app", "v2", 2), ("bad2/app", "v1", 3)):
        images.push_image(src_reg.url, repo, tag, layers=[shared, os.urandom(1024)], verify=False, seed=seed)
    ok3 = images.push_image(src_reg.url, "bad/app", "v3", verify=False, seed=4)
    ok4 = images.push_image(src_reg.url, "good/app", "v1", verify=False, seed=5)
    with FaultProxy(src_reg.url) as sproxy:
        sproxy.add_fault("status", status=503, method="GET", path_regex=rf"/blobs/{bad}$", times=1000)
        src, dst = client(sproxy.url, "primary"), client(dst_reg.url, "replica")  # retries=3
        res = replicate_target(src, dst, rule(), "replica", backoff=0.02)
        blob_gets = [r for r in sproxy.requests if r.method == "GET" and r.path.endswith(bad)]

    assert len(blob_gets) == 4  # exactly the transport's attempts, once
    assert res.status == "failed"
    failed = {(repo, tag): why for repo, tag, why in res.failed_items}
    assert set(failed) == {("bad/app", "v1"), ("bad/app", "v2"), ("bad2/app", "v1")}
    for why in failed.values():
        assert f"blob {bad}" in why and "HTTP 503" in why and "after 4 attempts" in why
    assert tags_of(dst_reg.url, "bad/app") == {"v3": ok3.digest}
    assert tags_of(dst_reg.url, "good/app") == {"v1": ok4.digest}
    assert (
        "bad2/app" not in images.catalog(dst_reg.url, verify=False) or tags_of(dst_reg.url, "bad2/app") == {}
    )


def test_unreadable_tags_while_planning_fail_only_those_tags(src_reg, dst_reg):
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=3, prefix="h/app", verify=False, seed=11)
    r = rule(deleteExtraneous=True)
    with FaultProxy(src_reg.url) as sproxy, FaultProxy(dst_reg.url) as dproxy:
        src, dst = client(sproxy.url, "primary"), client(dproxy.url, "replica")
        assert replicate_target(src, dst, r, "replica").status == "ok"
        extra = images.push_image(dst_reg.url, "h/app-0001", "stale", verify=False, seed="x")
        moved = images.push_image(src_reg.url, "h/app-0000", "build-0002", verify=False, seed="m")
        # the source cannot say what build-0001 of app-0000 is; the target cannot say what
        # build-0000 of app-0001 is
        sproxy.add_fault(
            "status", status=500, method="HEAD", path_regex=r"/h/app-0000/manifests/build-0001$", times=50
        )
        dproxy.add_fault(
            "status", status=500, method="HEAD", path_regex=r"/h/app-0001/manifests/build-0000$", times=50
        )
        res = replicate_target(src, dst, r, "replica")
    assert res.status == "failed"
    assert [(a, b) for a, b, _ in res.failed_items] == [("h/app-0000", "build-0001")]
    assert "source digest unreadable" in res.failed_items[0][2] and "HTTP 500" in res.failed_items[0][2]
    by = {x.source_repo: x for x in res.repositories}
    assert by["h/app-0000"].copied == ["build-0002"]  # the others went on
    assert tags_of(dst_reg.url, "h/app-0000")["build-0002"] == moved.digest
    assert by["h/app-0001"].copied == ["build-0000"]  # unknown on target: copied again
    assert by["h/app-0001"].deleted == []  # ... and no deletes there
    assert tags_of(dst_reg.url, "h/app-0001")["stale"] == extra.digest
    assert "no deletes" in (res.plan.repo("h/app-0001").no_deletes or "")


def test_unreachable_target_fails_the_run_and_names_it(src_reg, tmp_path, dead_port):
    images.push_many(src_reg.url, n_repos=2, tags_per_repo=2, prefix="u/app", verify=False)
    src = client(src_reg.url, "primary")
    dead = f"http://127.0.0.1:{dead_port}"  # nothing listens there (held: nobody else takes it)
    dst = RegistryClient("replica", dead, verify=False, retries=1, backoff=0.01, connect_timeout=1)
    res = replicate_target(src, dst, rule(), "replica")
    assert res.status == "failed"
    assert res.totals()["copied"] == 0
    failed = sorted((repo, why) for repo, _, why in res.failed_items)
    assert [repo for repo, _ in failed] == ["u/app-0000", "u/app-0001"]
    assert all(
        "target tags unreadable" in why and "cannot connect" in why and "replica" in why for _, why in failed
    )


def test_authenticated_registries_basic_source_token_target(registry_factory, token_server_factory):
    """Basic auth on the source, the bearer-token flow on the target: cross-repository mounts
    need a token for both repositories; the warm run's HEADs reuse cached tokens."""
    user, pw = "replicator", "s3cret-pw"
    # the factories stop what they started even when a later start fails (and the token server)
    tokens = token_server_factory(users={user: pw})
    src = registry_factory(htpasswd=(user, pw))
    dst = registry_factory(token=tokens.auth_config())
    try:
        images.push_many(
            src.url,
            n_repos=3,
            tags_per_repo=2,
            prefix="auth/app",
            verify=False,
            auth=(user, pw),
            base_layer_size=512 * 1024,
            seed=4,
        )
        sc = RegistryClient("primary", src.url, username=user, password=pw, verify=False, backoff=0.02)
        dc = RegistryClient("replica", dst.url, username=user, password=pw, verify=False, backoff=0.02)
        res = replicate_target(sc, dc, rule(), "replica")
        assert res.status == "ok", res.failed_items
        assert res.totals()["blobs_mounted"] == 2  # base layer mounted into 2 more repos
        dauth = images.BearerAuth(user, pw, verify=False)
        for repo in ("auth/app-0000", "auth/app-0001", "auth/app-0002"):
            want = {
                t: images.head_manifest(src.url, repo, t, auth=(user, pw), verify=False)
                for t in images.list_tags(src.url, repo, auth=(user, pw), verify=False)
            }
            got = {
                t: images.head_manifest(dst.url, repo, t, auth=dauth, verify=False)
                for t in images.list_tags(dst.url, repo, auth=dauth, verify=False)
            }
            assert got == want and len(want) == 2
        dst.clear_access_log()
        tokens.clear()
        warm = replicate_target(sc, dc, rule(), "replica")
        assert warm.status == "ok" and warm.totals()["copied"] == 0
        log = dst.access_log()
        assert writes(log) == []
        assert len([e for e in log if e.method == "HEAD" and e.status == 200]) == 6
        assert len(tokens.requests) <= 3  # cached per repository scope
        assert pw not in repr(res.failed_items) + repr(dc)
    finally:
        src.stop()
        dst.stop()
        tokens.stop()


# ---------------------------------------------------------------- deleteExtraneous


def _seed_delete_scenario(src_url: str, dst_url: str):
    images.push_image(src_url, "app/a", "v1", verify=False, seed="a1")
    a2 = images.push_image(src_url, "app/a", "v2", verify=False, seed="a2")
    images.push_image(src_url, "app/a", "dev", verify=False, seed="adev")
    images.push_image(src_url, "app/b", "v1", verify=False, seed="b1")
    images.push_image(src_url, "other/c", "v1", verify=False, seed="c1")
    return a2


def test_delete_extraneous_only_inside_the_rule_scope(src_reg, dst_reg):
    a2 = _seed_delete_scenario(src_reg.url, dst_reg.url)
    r = rule(include=["app/**"], tags={"include": ["v*"]}, prefix="eu", deleteExtraneous=True)
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, r, "replica").status == "ok"
    assert sorted(images.catalog(dst_reg.url, verify=False)) == ["eu/app/a", "eu/app/b"]

    # things on the target the rule does not own, and things it owns that the source dropped
    D = dst_reg.url
    keep_dev = images.push_image(D, "eu/app/a", "dev", verify=False, seed="tdev")  # tag filter: out
    images.tag_existing(D, "eu/app/a", "v8", keep_dev.digest, verify=False)  # in scope, shares dev's digest
    v9 = images.push_image(D, "eu/app/a", "v9", verify=False, seed="t9")  # in scope, not on source
    images.push_image(D, "eu/other/c", "v1", verify=False, seed="toc")  # repo excluded by include
    images.push_image(D, "other/c", "v1", verify=False, seed="tc")  # outside the prefix
    images.push_image(D, "eu-west/app/a", "v1", verify=False, seed="tw")  # sibling of the prefix
    gone = images.push_image(D, "eu/app/gone", "v1", verify=False, seed="tg")  # source repo gone
    images.push_signature(D, "eu/app/gone", gone.digest, verify=False)  # dies with its subject
    assert images.delete_manifest(src_reg.url, "app/a", a2.digest, verify=False) == 202  # source drops v2
    before = state(D)

    plan = plan_replication(src, dst, r, "replica")
    planned = sorted((p.target_repo, t) for p in plan.repositories for t, _ in p.extraneous)
    gone_sig = gone.digest.replace(":", "-") + ".sig"
    assert planned == [
        ("eu/app/a", "v2"),
        ("eu/app/a", "v9"),
        ("eu/app/gone", gone_sig),
        ("eu/app/gone", "v1"),
    ]
    kept = {(p.target_repo, t): why for p in plan.repositories for t, why in p.kept_extraneous}
    assert list(kept) == [("eu/app/a", "v8")] and "dev" in kept[("eu/app/a", "v8")]

    dst_reg.clear_access_log()
    res = replicate_target(src, dst, r, "replica", max_delete_fraction=0.6)  # 4 of 7 in scope
    assert res.status == "ok", res.failed_items
    deleted = sorted((x.target_repo, t) for x in res.repositories for t, _ in x.deleted)
    assert deleted == planned
    deletes = [e for e in dst_reg.access_log() if e.method == "DELETE"]
    assert sorted(e.path for e in deletes) == sorted(
        {
            f"/v2/eu/app/a/manifests/{a2.digest}",
            f"/v2/eu/app/a/manifests/{v9.digest}",
            f"/v2/eu/app/gone/manifests/{gone.digest}",
            f"/v2/eu/app/gone/manifests/{before['eu/app/gone'][gone_sig]}",
        }
    )

    after = state(D, list(before))
    # what is NOT deleted: every tag outside the scope, and the shared-digest tag
    for repo in ("eu/other/c", "other/c", "eu-west/app/a", "eu/app/b"):
        assert after[repo] == before[repo], repo
    assert after["eu/app/a"] == {
        "v1": before["eu/app/a"]["v1"],
        "dev": keep_dev.digest,
        "v8": keep_dev.digest,
    }
    assert after["eu/app/gone"] == {}


def test_delete_extraneous_refuses_over_the_cap_unless_forced(src_reg, dst_reg):
    for i in range(4):
        images.push_image(src_reg.url, "cap/app", f"v{i}", verify=False, seed=f"cap{i}")
    r = rule(include=["cap/**"], deleteExtraneous=True)
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    assert replicate_target(src, dst, r, "replica").status == "ok"
    for i in range(3):  # the source drops 3 of 4 tags: 75% > 50%
        d = images.head_manifest(src_reg.url, "cap/app", f"v{i}", verify=False)
        images.delete_manifest(src_reg.url, "cap/app", d, verify=False)
    before = tags_of(dst_reg.url, "cap/app")

    dst_reg.clear_access_log()
    res = replicate_target(src, dst, r, "replica")
    assert res.status == "refused"
    assert "3/4 tags (75%)" in res.deletes_refused and "--force" in res.deletes_refused
    assert [e for e in dst_reg.access_log() if e.method == "DELETE"] == []
    assert tags_of(dst_reg.url, "cap/app") == before

    res = replicate_target(src, dst, r, "replica", force=True)
    assert res.status == "ok"
    assert tags_of(dst_reg.url, "cap/app") == {"v3": before["v3"]}


def test_copy_repository_api(src_reg, dst_reg):
    """The per-repository entry point the flow's tasks use, with a shared Replicator."""
    images.push_many(
        src_reg.url,
        n_repos=2,
        tags_per_repo=2,
        prefix="api/app",
        verify=False,
        base_layer_size=1024 * 1024,
        seed=9,
    )
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    plan = plan_replication(src, dst, rule(), "replica")
    rep = Replicator(src, dst, concurrency=4)
    r0 = copy_repository(src, dst, plan.repositories[0], replicator=rep)
    r1 = copy_repository(src, dst, plan.repositories[1], replicator=rep)
    assert r0.copied == ["build-0000", "build-0001"] and r0.failed == []
    assert r0.blobs_uploaded >= 3 and r1.blobs_mounted == 1  # base layer mounted into the 2nd repo
    assert r1.bytes_mounted == 1024 * 1024


def test_mount_hints_carry_blob_locations_across_runs(src_reg, dst_reg, tmp_path):
    """A later run needs a layer the target already holds in another repository (copied by an
    earlier run): it is mounted from there, not uploaded again."""
    layer = os.urandom(2 * 1024 * 1024)
    images.push_image(src_reg.url, "hint/a", "v1", layers=[layer], verify=False, seed=1)
    src, dst = client(src_reg.url, "primary"), client(dst_reg.url, "replica")
    hints = tmp_path / "cache" / "replica.blobs.json"
    assert replicate_target(src, dst, rule(), "replica", hints_path=hints).status == "ok"
    assert hints.exists()
    images.push_image(src_reg.url, "hint/b", "v1", layers=[layer], verify=False, seed=2)
    dst_reg.clear_access_log()
    res = replicate_target(src, dst, rule(), "replica", hints_path=hints)
    b = [r for r in res.repositories if r.source_repo == "hint/b"][0]
    assert b.blobs_mounted == 1 and b.bytes_mounted == len(layer)
    layer_digest = images.sha256_digest(layer)
    uploads = [e for e in dst_reg.access_log() if e.method == "PUT" and layer_digest in unquote(e.query)]
    assert uploads == []


# ---------------------------------------------------------------- 1 GiB in constant memory

GIB = 1024**3
BLOCK = 1024 * 1024


def _gen_blocks(seed: bytes, n: int):
    base = hashlib.sha256(seed).digest() * (BLOCK // 32)
    for i in range(n):
        yield i.to_bytes(8, "big") + base[8:]


def _push_streamed_blob(url: str, repo: str, size: int) -> str:
    """Stream a generated blob to the registry (POST, one streamed PATCH, PUT ?digest=),
    never holding more than one 1 MiB block in memory."""
    n = size // BLOCK
    h = hashlib.sha256()
    for b in _gen_blocks(b"gib", n):
        h.update(b)
    digest = "sha256:" + h.hexdigest()
    s = requests.Session()
    r = s.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=30, verify=False)
    assert r.status_code == 202, r.text
    loc = requests.compat.urljoin(url + "/", r.headers["Location"])
    r = s.patch(
        loc,
        data=_gen_blocks(b"gib", n),
        headers={"Content-Type": "application/octet-stream"},
        timeout=(5, 300),
        verify=False,
    )
    assert r.status_code == 202, r.text
    loc = requests.compat.urljoin(url + "/", r.headers["Location"])
    r = s.put(loc + ("&" if "?" in loc else "?") + f"digest={digest}", timeout=(5, 300), verify=False)
    assert r.status_code == 201, r.text
    return digest


_RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    from regkeeper.config import ReplicationRule
    from regkeeper.oci import RegistryClient
    from regkeeper.replicate import replicate_target
    src = RegistryClient("primary", sys.argv[1], verify=False, read_timeout=300)
    dst = RegistryClient("replica", sys.argv[2], verify=False, read_timeout=300)
    rule = ReplicationRule.model_validate({"from": "primary", "to": ["replica"], "include": ["huge/**"]})
    res = replicate_target(src, dst, rule, "replica")
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"status": res.status, "failed": res.failed_items, "totals": res.totals(),
                      "vmhwm_kib": hwm}))
""")


@pytest.mark.slow
def test_one_gib_blob_replicated_in_constant_memory(src_reg, dst_reg):
    try:
        layer = _push_streamed_blob(src_reg.url, "huge/blob", GIB)
        cfg = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}}
        ).encode()
        cfg_digest, _ = images.push_blob(src_reg.url, "huge/blob", cfg, verify=False)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": images.DOCKER_MANIFEST,
                "config": {"mediaType": images.DOCKER_CONFIG, "size": len(cfg), "digest": cfg_digest},
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": GIB,
                        "digest": layer,
                    }
                ],
            }
        ).encode()
        digest = images.put_manifest(
            src_reg.url, "huge/blob", "v1", manifest, images.DOCKER_MANIFEST, verify=False
        )

        t0 = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, src_reg.url, dst_reg.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        elapsed = time.monotonic() - t0
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        peak_mb = report["vmhwm_kib"] / 1024
        print(f"\n1 GiB blob replicated in {elapsed:.1f}s, peak RSS {peak_mb:.1f} MiB")
        assert report["status"] == "ok", report["failed"]
        assert report["totals"]["bytes_uploaded"] >= GIB
        assert peak_mb < 150, f"peak RSS {peak_mb:.1f} MiB"
        assert images.head_manifest(dst_reg.url, "huge/blob", "v1", verify=False) == digest
        r = requests.head(f"{dst_reg.url}/v2/huge/blob/blobs/{layer}", timeout=10, verify=False)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == GIB
    finally:  # do not leave 2 GiB behind in pytest's retained temp dirs
        for reg in (src_reg, dst_reg):
            reg.stop()
            if reg.root is not None:
                shutil.rmtree(reg.root, ignore_errors=True)
