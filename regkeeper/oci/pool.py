"""One bounded pool of worker threads per registry client, shared by everything that fans out on
that client: the batch tasks of a run (several at once on Prefect's task runner), the inventory
scan's steps, the replicator. Concurrency is sized once, by the client's ``concurrency``: however
many batches run at the same time, at most that many threads work for the client (instead of a
pool of that size per batch, all queueing on the same in-flight bound).

``SharedPool.map`` keeps ``bounded_map``'s contract: ``(item, result, error)`` in input order,
one failure does not stop the others. Each call keeps at most ``limit`` of its items queued or
running at once, so batches that share the pool take turns instead of one waiting for another
to finish. A call made from inside a pool worker (a mapped function that maps again) runs its
items in that worker, one after the other: it never waits for a slot its own caller holds.
"""

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


def _mark_worker() -> None:
    _local.in_pool = True


def in_pool_worker() -> bool:
    """True in a thread of any client's shared pool."""
    return getattr(_local, "in_pool", False)


def _serial(fn: Callable[[T], R], items: list[T]) -> list[tuple[T, R | None, BaseException | None]]:
    out: list[tuple[T, R | None, BaseException | None]] = []
    for it in items:
        try:
            out.append((it, fn(it), None))
        except Exception as e:  # noqa: BLE001 - collected for the caller
            out.append((it, None, e))
    return out


class SharedPool:
    """At most ``size`` threads, started on demand and kept for the client's lifetime."""

    def __init__(self, size: int, name: str = "registry"):
        self.size = max(1, int(size))
        self.name = name
        self._ex: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._ex is None:
                safe = "".join(c if c.isalnum() else "-" for c in self.name)[:20]
                self._ex = ThreadPoolExecutor(
                    max_workers=self.size, thread_name_prefix=f"rk-{safe}", initializer=_mark_worker
                )
            return self._ex

    @property
    def threads(self) -> int:
        """Worker threads started so far (never more than ``size``)."""
        ex = self._ex
        return len(getattr(ex, "_threads", ())) if ex is not None else 0

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], limit: int | None = None
    ) -> list[tuple[T, R | None, BaseException | None]]:
        """Run ``fn`` over ``items`` on the shared threads, at most ``limit`` (default and
        ceiling: ``size``) of them at a time for this call."""
        items = list(items)
        k = self.size if limit is None else max(1, min(int(limit), self.size))
        if not items or k <= 1 or len(items) == 1 or in_pool_worker():
            return _serial(fn, items)
        ex = self._executor()
        gate = threading.Semaphore(k)
        release = lambda _f: gate.release()  # noqa: E731
        futures: list[Future] = []
        try:
            for it in items:
                gate.acquire()
                f = ex.submit(fn, it)
                f.add_done_callback(release)
                futures.append(f)
            out: list[tuple[T, R | None, BaseException | None]] = []
            for it, f in zip(items, futures, strict=True):
                err = f.exception()
                if err is not None and not isinstance(err, Exception):
                    raise err  # KeyboardInterrupt, SystemExit: not an item's failure
                out.append((it, None if err is not None else f.result(), err))
            return out
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        with self._lock:
            ex, self._ex = self._ex, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
