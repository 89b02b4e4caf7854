"""regkeeper.oci.pool.SharedPool: one bounded set of threads per client, shared by every batch
that fans out on it; bounded_map's contract (input order, one failure does not stop the others)."""

import threading
import time

import pytest

from regkeeper.oci.pool import SharedPool, in_pool_worker


class Gauge:
    """How many calls run at once (and the most ever), and which threads ran them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.threads: set[int] = set()

    def __call__(self, x):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.threads.add(threading.get_ident())
        time.sleep(0.01)
        with self.lock:
            self.now -= 1
        if x == "bad":
            raise ValueError("bad item")
        return x * 2


def test_results_in_input_order_failures_collected():
    pool = SharedPool(4)
    try:
        out = pool.map(Gauge(), [1, "bad", 3, 4, 5])
    finally:
        pool.close()
    assert [(i, r) for i, r, _ in out] == [(1, 2), ("bad", None), (3, 6), (4, 8), (5, 10)]
    assert isinstance(out[1][2], ValueError) and all(e is None for i, _, e in out if i != "bad")


def test_concurrent_batches_share_size_threads():
    """Four batches at once (Prefect's task runner) on a pool of 3: never more than 3 running,
    never more than 3 threads started, every batch complete."""
    pool, g = SharedPool(3), Gauge()
    before = threading.active_count()
    results = {}

    def batch(n):
        results[n] = pool.map(g, list(range(n * 10, n * 10 + 12)))

    callers = [threading.Thread(target=batch, args=(n,)) for n in range(4)]
    try:
        for t in callers:
            t.start()
        peak_threads = threading.active_count()
        for t in callers:
            t.join()
        assert pool.threads <= 3
        assert len(g.threads) <= 3
        assert g.peak == 3  # saturated, never above the bound
        assert peak_threads - before <= 4 + 3
        for n in range(4):
            assert [r for _, r, _ in results[n]] == [x * 2 for x in range(n * 10, n * 10 + 12)]
    finally:
        pool.close()


def test_limit_bounds_one_call():
    pool, g = SharedPool(8), Gauge()
    try:
        pool.map(g, list(range(20)), limit=2)
    finally:
        pool.close()
    assert g.peak <= 2


def test_nested_map_runs_in_the_worker():
    """A mapped function that maps again does not wait for a slot its caller holds."""
    pool = SharedPool(2)
    seen = []

    def inner(x):
        seen.append(in_pool_worker())
        return x

    def outer(x):
        return [r for _, r, _ in pool.map(inner, [x, x + 1, x + 2])]

    try:
        out = pool.map(outer, [0, 10, 20, 30])
    finally:
        pool.close()
    assert [r for _, r, _ in out] == [[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]
    assert all(seen) and not in_pool_worker()


def test_small_inputs_run_inline_and_interrupts_propagate():
    pool = SharedPool(4)
    assert pool.map(lambda x: x, []) == []
    assert pool.map(lambda x: threading.current_thread().name, ["one"]) == [
        ("one", threading.current_thread().name, None)
    ]
    assert pool.threads == 0

    def boom(x):
        if x == 2:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        pool.map(boom, [1, 2, 3])
    pool.close()
    pool.close()  # idempotent
