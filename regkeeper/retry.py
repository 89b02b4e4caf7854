"""The ONE retry decision for every remote call: what is transient, how long to wait, how often.

Prefect-free and neutral about the HTTP library: it classifies exceptions of ``requests``,
``urllib3`` (the kubernetes client raises those), the standard library (sockets, http.client,
json) and any exception that carries ``status`` / ``transient`` / ``retry_after`` attributes
(``RegistryError``, kubernetes ``ApiException``, requests ``HTTPError`` via ``.response``).

transient  connection errors, connect and read timeouts, resets and truncation while reading a
           body, a 2xx JSON body that does not parse (only 2xx bodies are parsed strictly, so it
           is taken for a body cut in transit), HTTP 429 (Retry-After honoured: seconds or an
           HTTP-date, capped) and 502/503/504, and any exception flagged ``transient=True``.
permanent  everything else: TLS verification failures, 400/401/403/404/405, 500, bad requests,
           programming errors.

Use it as a decision (``is_transient`` / ``transient_reason``), as a backoff (``RetryPolicy.
delay``) or as a loop (``run_with_retries``): the callable given to the loop sends the request
AND reads and parses the body, so a break while reading is retried like a refused connection.
"""

import email.utils
import http.client
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .util import redact_url

log = logging.getLogger("regkeeper.retry")

T = TypeVar("T")

# The only place the retried HTTP statuses are listed.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

_TLS = (requests.exceptions.SSLError, urllib3.exceptions.SSLError)
_BODY_BROKE = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.DecodeError,
    http.client.IncompleteRead,
)
_CONNECT_TIMEOUT = (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)
_READ_TIMEOUT = (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)
_CONNECTION = (
    requests.exceptions.ConnectionError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.NameResolutionError,
    ConnectionError,
    http.client.RemoteDisconnected,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long: ``attempts`` in total (1 = no retry); before retry n, a random
    delay in [0, min(cap, base * 2**(n-1))] (full jitter), or the server's Retry-After capped
    at ``cap``."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0

    @classmethod
    def from_retries(cls, retries: int, backoff: float = 0.5, cap: float = 30.0) -> "RetryPolicy":
        """``retries`` retries after the first attempt (the configuration's ``retries:``)."""
        return cls(attempts=max(0, int(retries)) + 1, base=max(0.0, backoff), cap=cap)

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return max(0.0, min(self.cap, float(retry_after)))
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return rand() * ceiling


def parse_retry_after(value, now: datetime | None = None) -> float | None:
    """A Retry-After header value (delta-seconds or an HTTP-date) as seconds from ``now``;
    None when absent or unreadable."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def status_of(exc: BaseException | None) -> int | None:
    """The HTTP status an exception carries (``.status``, ``.status_code`` or
    ``.response.status_code``), else None."""
    if exc is None:
        return None
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status", "status_code"):
            v = getattr(holder, attr, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def retry_after_of(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait: ``.retry_after``, or a Retry-After header found on
    ``.headers`` / ``.response.headers``."""
    if exc is None:
        return None
    v = getattr(exc, "retry_after", None)
    if v is not None:
        return parse_retry_after(v)
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            got = parse_retry_after(headers.get("Retry-After"))
            if got is not None:
                return got
    return None


def _inner(exc: BaseException) -> BaseException:
    """urllib3's MaxRetryError says why in ``.reason``; classify that."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(reason, BaseException):
        return reason
    return exc


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of the innermost useful exception, in one line: unwraps requests and
    urllib3 wrappers (MaxRetryError.reason, ``('Connection broken: ...', cause)`` tuples) and
    drops urllib3's object reprs."""
    for _ in range(5):
        exc = _inner(exc)
        args: tuple[Any, ...] = getattr(exc, "args", ())
        if len(args) == 1 and isinstance(args[0], BaseException):
            exc = args[0]
            continue
        break
    args = getattr(exc, "args", ())
    text = (
        args[0]
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], BaseException)
        else str(exc)
    )
    text = re.sub(r"\(Caused by .*", "", text)
    text = re.sub(r"<urllib3[^>]*>", "", text).strip(" :,").replace("\n", " ")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _exception_reason(exc: BaseException) -> str | None:
    exc = _inner(exc)
    if isinstance(exc, _TLS):
        return None  # a certificate will not fix itself
    if isinstance(exc, json.JSONDecodeError):
        return f"response is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
    if isinstance(exc, _BODY_BROKE):
        return f"connection broke while reading the response ({exception_text(exc)})"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass
        return f"connection failed ({exception_text(exc)})"
    if isinstance(exc, _CONNECT_TIMEOUT):
        return f"connect timed out ({exception_text(exc)})"
    if isinstance(exc, _READ_TIMEOUT):
        return f"read timed out ({exception_text(exc)})"
    if isinstance(exc, _CONNECTION):
        return f"connection failed ({exception_text(exc)})"
    return None


def transient_reason(exc: BaseException | None = None, status: int | None = None) -> str | None:
    """Why this failure is worth retrying, in a few words (for logs); None when permanent.
    Give the exception, the HTTP status, or both (an explicit ``status`` wins)."""
    st = status if status is not None else status_of(exc)
    if st is not None and st in TRANSIENT_STATUSES:
        return f"HTTP {st}" + (" (rate limited)" if st == 429 else "")
    if exc is not None and getattr(exc, "transient", False) is True:
        msg = getattr(exc, "message", None)
        return str(msg)[:200] if msg else exception_text(exc)
    if st is not None and st >= 400:
        return None
    return _exception_reason(exc) if exc is not None else None


def is_transient(exc: BaseException | None = None, status: int | None = None) -> bool:
    """THE retry decision: True for a transient failure (see the module docstring)."""
    return transient_reason(exc, status) is not None


def _mark_attempts(exc: BaseException, attempts: int) -> None:
    try:
        exc.attempts = attempts  # type: ignore[attr-defined]  # any exception type: read back with getattr
    except (AttributeError, TypeError):  # an exception type with __slots__: keep it as is
        pass


def run_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    describe: str = "",
    on_retry: Callable[[BaseException, str, int, float], None] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    logger: logging.Logger | None = None,
) -> T:
    """Call ``fn`` (which sends the request and reads/parses the body) up to ``policy.attempts``
    times, retrying transient failures after ``policy.delay``. Every retry is logged (WARNING,
    ``describe`` first, e.g. ``registry 'r1': GET /v2/_catalog``) and reported to
    ``on_retry(exc, reason, attempt, delay)``. A permanent failure is raised at once; when the
    attempts run out the last exception is raised with ``exc.attempts`` set. An exception that
    already carries ``attempts`` (an inner loop gave up) is not retried again."""
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if getattr(exc, "attempts", None):
                raise
            reason = transient_reason(exc)
            if reason is None:
                raise
            if attempt >= attempts:
                _mark_attempts(exc, attempt)
                raise
            wait = policy.delay(attempt, retry_after_of(exc))
            (logger or log).warning(
                "%s: %s; attempt %d/%d failed, retrying in %.2fs",
                describe or "call",
                reason,
                attempt,
                attempts,
                wait,
            )
            if on_retry is not None:
                on_retry(exc, reason, attempt, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class TransientStatus(Exception):
    """An HTTP response with a transient status, raised inside an attempt so the loop retries it
    (``status``, ``retry_after`` and ``response`` are read from it)."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code


class RetrySession(requests.Session):
    """A requests Session whose ``request`` goes through ``run_with_retries`` for ``methods``:
    the body of a non-streamed response is read inside the attempt; after the last attempt a
    transient HTTP status is handed back as the response (the caller reports its status).
    The adapter retries nothing itself (max_retries=0)."""

    def __init__(self, policy: RetryPolicy, methods: frozenset, pool_maxsize: int = 10):
        super().__init__()
        self.policy = policy
        self.retry_methods = frozenset(m.upper() for m in methods)
        adapter = HTTPAdapter(max_retries=0, pool_maxsize=pool_maxsize)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, *args, **kwargs):
        if str(method).upper() not in self.retry_methods:
            return super().request(method, url, *args, **kwargs)

        def attempt():
            resp = super(RetrySession, self).request(method, url, *args, **kwargs)
            if is_transient(status=resp.status_code):
                raise TransientStatus(resp)
            return resp

        try:
            return run_with_retries(attempt, self.policy, f"{str(method).upper()} {redact_url(url)}")
        except TransientStatus as e:
            return e.response
