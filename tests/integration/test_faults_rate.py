"""Transient faults at a rate: replicate and backup/restore complete in ONE run.

Every registry call of the job goes through the fault proxy's random mode (a few % of the
responses: resets before a response and mid-body, bodies cut short, 429 with Retry-After, 503,
slow answers, answers lost after the request took effect; seeded, never more than 2 faults in
a row for one request). The sample is a real
distribution registry with a few dozen tags: images sharing a base layer, a multi-arch OCI index
and a Docker manifest list, cosign signatures/attestations, an OCI referrer, a tag alias and a
6 MiB image (> 4 MiB: the chunked upload path). Ground truth is read straight from the
registries with the independent test client (tests/support/images.py), never through a proxy.
"""

import logging

import pytest
import requests

from regkeeper import backup as B
from regkeeper.cache import DigestCache
from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import replicate_target
from tests.support import images
from tests.support.faultrate import DEFAULT_WEIGHTS
from tests.support.sample import fill, truth

V = {"verify": False}
P = 0.05  # share of responses faulted
# the brief's kinds, and a lost answer (the request took effect, the client never heard)
WEIGHTS = {**DEFAULT_WEIGHTS, "reset_after": 1}
ALL_KINDS = set(WEIGHTS)


def client(url: str, name: str, tmp_path, **kw) -> RegistryClient:
    kw.setdefault("retries", 3)  # 4 attempts: more than the proxy's cap of 2
    return RegistryClient(
        name,
        url,
        verify=False,
        backoff=0.05,
        read_timeout=30,
        cache=DigestCache(tmp_path / f"cache-{name}"),
        **kw,
    )


def retry_logs(caplog) -> int:
    return sum(1 for r in caplog.records if r.name == "regkeeper.retry" and r.levelno == logging.WARNING)


@pytest.fixture
def regs(registry_factory):
    return registry_factory(), registry_factory()


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_random_mode_injects_its_kinds_within_the_cap(registry, fault_proxy_factory, unique_repo, kind):
    img = images.push_image(registry.url, unique_repo, "v1", verify=False, seed=kind)
    proxy = fault_proxy_factory(registry.url)
    rate = proxy.random_faults(1.0, seed=kind, weights={kind: 1}, max_in_row=2, retry_after=1, delay=0.05)
    answers = []
    for _ in range(3):
        try:
            r = requests.get(
                f"{proxy.url}/v2/{unique_repo}/manifests/v1",
                timeout=10,
                headers={"Accept": images.MANIFEST_ACCEPT},
            )
            answers.append((r.status_code, r.headers.get("Retry-After"), r.content))
        except requests.RequestException as e:
            answers.append(type(e).__name__)
    assert rate.injected == {kind: 2} and rate.capped == 1 and rate.seen == 3
    assert [rec.fault for rec in proxy.requests] == [("status" if kind == "503" else kind)] * 2 + [None]
    assert answers[2] == (200, None, img.manifest_bytes)  # the cap: the third goes through
    if kind == "429":
        assert answers[:2] == [(429, "1", b"")] * 2
    elif kind == "503":
        assert [a[0] for a in answers[:2]] == [503, 503]
    elif kind == "slow":
        assert answers[:2] == [(200, None, img.manifest_bytes)] * 2
    else:  # the connection broke
        assert all(isinstance(a, str) for a in answers[:2]), answers


def test_replicate_completes_in_one_run_under_faults(regs, fault_proxy_factory, tmp_path, caplog):
    src_reg, dst_reg = regs
    pushed = fill(src_reg.url)
    want = truth(src_reg.url)
    assert len(want) == 29
    sproxy, dproxy = fault_proxy_factory(src_reg.url), fault_proxy_factory(dst_reg.url)
    srate = sproxy.random_faults(P, seed="replicate-src", weights=WEIGHTS)
    drate = dproxy.random_faults(P, seed="replicate-dst", weights=WEIGHTS)
    src, dst = client(sproxy.url, "primary", tmp_path), client(dproxy.url, "replica", tmp_path)
    rule = ReplicationRule.model_validate({"from": "primary", "to": ["replica"]})
    caplog.set_level(logging.INFO)

    res = replicate_target(src, dst, rule, "replica", backoff=0.05, chunk_size=1024 * 1024, verify=True)

    assert res.status == "ok", res.failed_items
    assert res.totals()["failed"] == 0 and res.failed_items == []
    assert truth(dst_reg.url) == want  # every tag, the source's digest
    assert truth(dst_reg.url)[("big/app", "v1")] == pushed["big"].digest
    # the faults were there, of every kind, and they were retried (not absorbed by luck)
    assert srate.total > 0 and drate.total > 0, (srate, drate)
    assert set(srate.injected) | set(drate.injected) == ALL_KINDS, (srate, drate)
    retries = src.stats["retries"] + dst.stats["retries"]
    restarts = sum(r.retries for r in res.repositories)
    assert retries > 0
    assert retry_logs(caplog) == retries  # every retry logged, once
    # each retry or restart answers an injected fault (a slow answer needs none; a fault on a
    # body nobody reads, e.g. a HEAD's, needs none either)
    assert retries + restarts <= srate.total + drate.total
    assert (
        retries + restarts
        >= (srate.total - srate.injected["slow"] + drate.total - drate.injected["slow"]) // 2
    ), (srate, drate)


def test_backup_then_restore_under_faults(registry_factory, fault_proxy_factory, tmp_path, caplog):
    reg = registry_factory()
    p = fill(reg.url)
    before = truth(reg.url)
    proxy = fault_proxy_factory(reg.url)
    store = B.open_target(f"file://{tmp_path / 'backups'}", None)
    caplog.set_level(logging.INFO)

    rate = proxy.random_faults(P, seed="backup", weights=WEIGHTS)
    c = client(proxy.url, "primary", tmp_path)
    res = B.backup(c, store)
    snap = res.snapshot
    assert res.errors == []
    assert {(r, t): d for r, rec in snap.repositories.items() for t, d in rec["tags"].items()} == before
    assert snap.counts["tags"] == len(before)
    assert snap.counts["indexes"] == 3  # + the referrers fallback tag
    backup_faults, backup_retries = rate.total, c.stats["retries"]
    assert backup_faults > 0 and backup_retries > 0, rate

    # delete some tags (straight on the registry): an index, a signature, the big image, a
    # tag alias and two plain tags; then restore them through the faulty proxy
    gone = [
        ("multi/oci", p["index"].digest),
        ("multi/oci", p["sig_idx"].digest),
        ("big/app", p["big"].digest),
        ("team/app-0001", p["many"][5].digest),
        ("team/app-0002", p["many"][11].digest),
    ]
    for repo, digest in gone:
        assert images.delete_manifest(reg.url, repo, digest, **V) == 202
    damaged = truth(reg.url)
    assert len(damaged) < len(before)

    rate = proxy.random_faults(P, seed="restore", weights=WEIGHTS)
    c2 = client(proxy.url, "primary", tmp_path / "r")
    restored = B.restore(c2, store, dry_run=False)

    assert not restored.failed, restored.failed
    assert truth(reg.url) == before  # every deleted tag back on its digest
    acts = {(r.repository, r.tag): r.action for r in restored.rows}
    for key in set(before) - set(damaged):
        assert acts[key] == B.ACTION_RESTORED, (key, acts[key])
    assert rate.total > 0 and c2.stats["retries"] > 0, rate
    assert retry_logs(caplog) == backup_retries + c2.stats["retries"]

    # disaster recovery under faults: the snapshot into a new, empty registry, every layer
    # (the 6 MiB one too) copied from the old registry as blob source, both behind faults
    new = registry_factory()
    nproxy = fault_proxy_factory(new.url)
    nrate = nproxy.random_faults(P, seed="dr-target", weights=WEIGHTS)
    srate = proxy.random_faults(P, seed="dr-source", weights=WEIGHTS)
    c_new = client(nproxy.url, "new", tmp_path)
    res = B.restore(
        c_new,
        store,
        registry="primary",
        dry_run=False,
        blob_source=client(proxy.url, "old", tmp_path / "old"),
    )
    assert not res.failed, res.failed
    assert truth(new.url) == before
    assert res.stats["blobs_copied"] > 0 and nrate.total > 0 and srate.total > 0, (nrate, srate)
