"""Batch tasks share their client's concurrency: four batches at once (as Prefect's task runner
runs them) on a client with ``concurrency: 3`` never have more than 3 requests in flight at the
registry (counted at a proxy in front of it, on the server side) and never start more than 3
worker threads (instead of a pool of 3 per batch queueing for the same 3 slots)."""

import threading
import time

from regkeeper.cache import DigestCache
from regkeeper.config import ReplicationRule
from regkeeper.inventory import scan
from regkeeper.oci import RegistryClient
from regkeeper.replicate import Replicator, plan_replication
from tests.support import images
from tests.support.faultproxy import FaultProxy

CONCURRENCY = 3
BATCHES = 4


class GaugeProxy(FaultProxy):
    """A fault proxy that also counts the requests it is handling at once (server side)."""

    def __init__(self, upstream_url: str):
        self.now = self.peak = 0
        self._gauge = threading.Lock()
        super().__init__(upstream_url)
        # every request a little slow, so the batches really overlap
        self.add_fault("slow", delay=0.01, times=10**6)

    def _handle(self, h):
        with self._gauge:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            super()._handle(h)
        finally:
            with self._gauge:
                self.now -= 1


class ThreadWatch:
    """The most worker threads started inside the block alive at once (regkeeper names them
    ``rk...``: a client's shared pool ``rk-<client>_N``, a per-call bounded_map pool ``rk_N``;
    idle pools of earlier tests' clients are not counted)."""

    def __init__(self):
        self.peak = 0
        self._before: set[int] = set()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            n = sum(
                1 for t in threading.enumerate() if t.name.startswith("rk") and t.ident not in self._before
            )
            self.peak = max(self.peak, n)
            time.sleep(0.002)

    def __enter__(self):
        self._before = {t.ident for t in threading.enumerate() if t.ident is not None}
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_batches(fn, batches) -> list:
    out: list = [None] * len(batches)
    errors: list = []

    def one(i):
        try:
            out[i] = fn(batches[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_concurrent_scan_batches_share_the_client(registry_factory, tmp_path):
    reg = registry_factory()
    repos = [f"conc/scan-{i:02d}" for i in range(BATCHES * 2)]
    images.push_many(reg.url, repos=repos, tags_per_repo=5, seed=11)
    proxy = GaugeProxy(reg.url)
    try:
        c = RegistryClient("conc", proxy.url, concurrency=CONCURRENCY, cache=DigestCache(tmp_path / "c"))
        batches = [repos[i::BATCHES] for i in range(BATCHES)]
        with ThreadWatch() as watch:
            invs = run_batches(lambda b: scan(c, repositories=b), batches)
        assert sum(inv.tag_count for inv in invs) == len(repos) * 5
        assert 2 <= proxy.peak <= CONCURRENCY  # the batches overlapped, within the bound
        assert c.inflight_peak <= CONCURRENCY
        assert c.pool.threads <= CONCURRENCY and watch.peak <= CONCURRENCY
        c.close()
    finally:
        proxy.stop()


def test_concurrent_copy_batches_share_the_target_client(registry_factory):
    src_reg, dst_reg = registry_factory(), registry_factory()
    repos = [f"conc/copy-{i:02d}" for i in range(BATCHES * 2)]
    images.push_many(src_reg.url, repos=repos, tags_per_repo=3, seed=12, base_layer_size=8192)
    proxy = GaugeProxy(dst_reg.url)
    try:
        src = RegistryClient("primary", src_reg.url)
        dst = RegistryClient("replica", proxy.url, concurrency=CONCURRENCY)
        rule = ReplicationRule.model_validate({"from": "primary", "to": ["replica"]})  # concurrency 8
        batches = [repos[i::BATCHES] for i in range(BATCHES)]
        plans = [plan_replication(src, dst, rule, "replica", repositories=b) for b in batches]
        rep = Replicator(src, dst, concurrency=rule.concurrency)
        proxy.clear()
        with ThreadWatch() as watch:
            results = run_batches(lambda p: rep.copy(p.repositories), plans)
        copied = sum(len(r.copied) for rs in results for r in rs)
        assert copied == len(repos) * 3 and not any(r.failed for rs in results for r in rs)
        assert 2 <= proxy.peak <= CONCURRENCY
        assert dst.inflight_peak <= CONCURRENCY
        assert dst.pool.threads <= CONCURRENCY and watch.peak <= CONCURRENCY
        assert src.pool.threads == 0  # items run on the target's threads only
    finally:
        proxy.stop()
