"""Small shared helpers: bounded concurrency, time, redaction."""

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], max_workers: int
) -> list[tuple[T, R | None, BaseException | None]]:
    """Run ``fn`` over ``items`` with at most ``max_workers`` threads.

    Returns ``(item, result, error)`` in input order; one failure does not stop the others.
    """
    items = list(items)
    if not items:
        return []
    out: list = [None] * len(items)
    if max_workers <= 1 or len(items) == 1:
        for i, it in enumerate(items):
            try:
                out[i] = (it, fn(it), None)
            except Exception as e:  # noqa: BLE001 - collected for the caller
                out[i] = (it, None, e)
        return out
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix="rk") as ex:
        futs = {ex.submit(fn, it): i for i, it in enumerate(items)}
        for f in as_completed(futs):
            i = futs[f]
            try:
                out[i] = (items[i], f.result(), None)
            except Exception as e:  # noqa: BLE001
                out[i] = (items[i], None, e)
    return out


def succeeded(results: Iterable[tuple[T, R | None, BaseException | None]]) -> Iterator[tuple[T, R]]:
    """``(item, result)`` of :func:`bounded_map` results, in order, for a caller that stops at
    the first failure: that failure is raised when the loop reaches it."""
    for item, res, err in results:
        if err is not None:
            raise err
        yield item, cast(R, res)  # no error: what ``fn`` returned


def batches(items: list, size: int) -> list[list]:
    """Consecutive slices of ``items`` of at most ``size`` (one Prefect task per batch)."""
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def batch_label(batch: list, name: Callable = str) -> str:
    """``first..last (n)`` for a task run name."""
    if not batch:
        return "empty"
    if len(batch) == 1:
        return name(batch[0])
    return f"{name(batch[0])}..{name(batch[-1])} ({len(batch)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


def redact_url(url: str) -> str:
    """``https://user:pw@hooks.slack.com/services/T/B/X`` -> ``https://hooks.slack.com/…``."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<url>"
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return f"{p.scheme}://{host}/…" if p.path not in ("", "/") or p.query else f"{p.scheme}://{host}"


_SECRETISH = re.compile(
    r"(?i)(authorization:\s*)(\S+\s+)?\S+|((?:password|token|secret|access_token|"
    r"signature|sig|credential|x-amz-[a-z-]+|awsaccesskeyid)=)[^&\s]+|"
    r"(//)[^/@\s:]+:[^/@\s]+@"
)


def scrub(text: str) -> str:
    """Remove credential-looking fragments from free text (error bodies, log lines)."""
    return _SECRETISH.sub(
        lambda m: (m.group(1) or m.group(3) or m.group(4) or "") + "***" + ("@" if m.group(4) else ""), text
    )


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def atomic_write(path, data: bytes | str, *, fsync: bool = False, mkdir: bool = True) -> None:
    """Write a file so readers see the old content or the new, never a torn one
    (temp file in the same directory + os.replace). ``fsync`` for data that must survive a crash;
    ``mkdir=False`` when the caller knows the directory exists (one syscall less per write)."""
    from pathlib import Path

    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def retry_session(
    retries: int = 3,
    backoff: float = 0.3,
    methods: frozenset = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"}),
    pool_maxsize: int = 10,
):
    """A requests Session that retries transient failures of ``methods`` through THE retry
    decision (regkeeper.retry: connection errors, resets and cut bodies, 429 honouring
    Retry-After, 502/503/504) with backoff; ``retries`` retries after the first attempt.
    Callers still pass ``timeout=`` and ``verify=``."""
    from .retry import RetryPolicy, RetrySession

    return RetrySession(RetryPolicy.from_retries(retries, backoff), methods, pool_maxsize)
