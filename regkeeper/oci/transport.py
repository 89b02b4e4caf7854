"""Transport: how one registry is talked to. A pooled ``requests`` session (no urllib3 retries),
connect and read timeouts and ``verify=`` on every call, a bound on requests in flight, the
request loop (auth challenge, status check, body read) run through THE retry decision
(regkeeper.retry), error mapping, and a fast path for manifest HEADs.

Retried (transient failures only, see regkeeper.retry): GET, HEAD, PUT (content-addressed or
idempotent), DELETE by digest and POST (upload start, mount). PATCH is not: a failed chunk fails
the upload and the one blob transfer restarts it. A non-streamed response is read, and a JSON
one parsed, inside the attempt, so a reset or a cut body is retried like a refused connection.
Each retry counts in ``stats["retries"]`` and is logged by ``regkeeper.retry`` (WARNING).
"""

import http.client
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .. import __version__
from ..errors import AuthError, RegistryError
from ..retry import RetryPolicy, parse_retry_after, run_with_retries
from .auth import RegistryAuth, scope_key
from .errormap import (
    Call,
    error_for_exception,
    error_for_response,
    error_for_status,
    json_object,
)
from .manifest import ManifestHead
from .mediatypes import ACCEPT_MANIFESTS
from .pool import SharedPool
from .session import EnvOnceSession

log = logging.getLogger("regkeeper.oci")
T = TypeVar("T")
R = TypeVar("R")

RETRIED_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST"})
SLOW = object()  # sentinel: the fast HEAD path declined, use the normal one
# what a failed call may raise below the client; mapped to RegistryError once, after the loop
_LIBRARY_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


class _InFlight:
    """The bound on requests in flight (a semaphore) and its high-water mark."""

    __slots__ = ("_sem", "_lock", "_now", "peak")

    def __init__(self, size: int):
        self._sem = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._now = 0
        self.peak = 0

    def __enter__(self):
        self._sem.acquire()
        with self._lock:
            self._now += 1
            if self._now > self.peak:
                self.peak = self._now

    def __exit__(self, *exc):
        with self._lock:
            self._now -= 1
        self._sem.release()


@dataclass(slots=True)
class _Send:
    """What one ``request`` sends and accepts (the same for every attempt)."""

    call: Call
    key: str
    headers: dict
    data: Any = None  # bytes, or a file rewound before each attempt
    params: dict | None = None
    stream: bool = False
    ok: tuple = (200,)
    allow_404: bool = False
    extra_scopes: list = field(default_factory=list)
    timeout: float | tuple[float, float] | None = None
    read: Callable | None = None


class RegistryTransport:
    """Session, timeouts, TLS, concurrency bound, retries and error mapping for one registry."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        auth: RegistryAuth,
        verify: bool | str = True,
        client_cert: tuple[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        concurrency: int = 8,
    ):
        self.name = name
        self.url = url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self.auth = auth
        auth.request_token = self._request_token
        self.verify = verify
        self.cert = client_cert
        self.timeout = (connect_timeout, read_timeout)
        self.concurrency = concurrency
        self.policy = RetryPolicy.from_retries(retries, backoff)
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.session = EnvOnceSession()  # the environment read once per origin
        # ``concurrency`` bounds the requests in flight to this registry, however many tasks and
        # thread pools share the client; the connection pool is sized to match. ``pool``: the
        # client's worker threads (as many), shared by every batch that fans out on it.
        self._inflight = _InFlight(concurrency)
        self.pool = SharedPool(concurrency, name)
        # max_retries=0: urllib3 retries nothing; every retry is decided in regkeeper.retry
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=concurrency + 2)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"regkeeper/{__version__}"
        self._fast = None  # lazily: (urllib3 pool, timeout, path prefix) or False
        if verify is False and self.url.startswith("https://"):
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("registry %s: TLS certificate verification is disabled", name)

    def close(self) -> None:
        self.pool.close()
        self.session.close()

    @property
    def inflight_peak(self) -> int:
        """The most requests this client ever had in flight at once (<= ``concurrency``)."""
        return self._inflight.peak

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], max_workers: int | None = None
    ) -> list[tuple[T, R | None, BaseException | None]]:
        """``(item, result, error)`` of ``fn`` over ``items`` in input order, on the client's
        shared worker threads (``pool.SharedPool``), at most ``max_workers`` at a time for this
        call (default and ceiling: the client's concurrency)."""
        return self.pool.map(fn, items, max_workers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ bookkeeping

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def _on_retry(self, exc: BaseException, reason: str, attempt: int, delay: float) -> None:
        self._count("retries")

    def _url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.url + path

    def _call(self, method: str, url: str, repo: str | None) -> Call:
        return Call(self.name, self.host, method, url, repo)

    def _run(self, call: Call, fn: Callable, retried: bool = True):
        """Run one call's attempt function through the retry decision; map what escapes."""
        try:
            if not retried:
                return fn()
            return run_with_retries(fn, self.policy, call.describe(), self._on_retry)
        except RegistryError as e:
            call.fill(e)  # the same exception, now naming the call: re-raised as it came
            raise
        except _LIBRARY_ERRORS as e:
            raise error_for_exception(e, call) from None

    # ------------------------------------------------------------------ the request loop

    def request(
        self,
        method: str,
        path: str,
        *,
        repo: str | None = None,
        headers: dict | None = None,
        data=None,
        params=None,
        stream: bool = False,
        ok: Iterable[int] = (200,),
        allow_404: bool = False,
        extra_scopes: list[str] | None = None,
        timeout=None,
        read: Callable[[requests.Response], object] | None = None,
    ):
        """One API call with auth, retries, timeouts, and errors that name the registry, the
        call, the repository and the HTTP status. Returns the response, or ``read(response)``
        when given: ``read`` runs inside the attempt (a body that breaks or does not parse is
        retried). ``stream=True`` without ``read`` returns once the headers arrived."""
        url = self._url(path)
        call = self._call(method, url, repo)
        s = _Send(
            call,
            scope_key(method, repo, urlsplit(url).path),
            dict(headers or {}),
            data,
            params,
            stream,
            tuple(ok),
            allow_404,
            list(extra_scopes or []),
            timeout,
            read,
        )
        return self._run(call, lambda: self._attempt(s), retried=method in RETRIED_METHODS)

    def _attempt(self, s: _Send):
        resp = self._send(s)
        if resp.status_code == 401 and self.auth.answer(
            resp.headers.get("WWW-Authenticate", ""), s.key, s.extra_scopes
        ):
            resp.close()
            resp = self._send(s)
        if not (resp.status_code in s.ok or (resp.status_code == 404 and s.allow_404)):
            raise error_for_response(resp, s.call)
        if s.read is None:
            return resp
        try:
            return s.read(resp)
        finally:
            if s.stream:
                resp.close()

    def _send(self, s: _Send) -> requests.Response:
        h = dict(s.headers)
        h.update(self.auth.headers(s.key))
        if hasattr(s.data, "seek"):
            s.data.seek(0)
        method = s.call.method
        with self._inflight:
            resp = self.session.request(
                method,
                s.call.url,
                headers=h,
                data=s.data,
                params=s.params,
                stream=s.stream,
                timeout=s.timeout or self.timeout,
                verify=self.verify,
                cert=self.cert,
                allow_redirects=method in ("GET", "HEAD"),
            )
        self._count(method)
        return resp

    def _request_token(self, url: str, creds: tuple[str, str] | None, scopes: list[str]) -> dict:
        """GET the token service (``auth.RegistryAuth`` asks); the JSON object it answered."""
        call = Call(self.name, f"token service {urlsplit(url).netloc}", "GET", url)
        basic = requests.auth.HTTPBasicAuth(*creds) if creds else None

        def attempt() -> dict:
            resp = self.session.get(url, auth=basic, timeout=self.timeout, verify=self.verify, cert=self.cert)
            self._count("TOKEN")
            if resp.status_code in (401, 403):
                resp.close()
                raise AuthError(
                    f"token service refused the credentials for scope {' '.join(scopes) or '(none)'}",
                    status=resp.status_code,
                )
            if resp.status_code != 200:
                raise error_for_response(resp, call)
            return json_object(resp.content)

        return self._run(call, attempt)

    # ------------------------------------------------------------------ fast manifest HEAD

    def _fast_pool(self):
        """The session adapter's own urllib3 pool for this registry (same keep-alive connections
        and TLS settings), or False when requests must do the call (an environment proxy
        applies, or REGKEEPER_FAST_HEAD=0)."""
        if self._fast is None:
            self._fast = False
            try:
                if os.environ.get("REGKEEPER_FAST_HEAD", "1") != "0" and not (
                    self.session.trust_env and requests.utils.get_environ_proxies(self.url)
                ):
                    req = requests.Request("HEAD", self.url + "/v2/").prepare()
                    adapter = self.session.get_adapter(self.url)
                    pool = adapter.get_connection_with_tls_context(req, self.verify, None, self.cert)
                    self._fast = (
                        pool,
                        urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1]),
                        urlsplit(self.url).path.rstrip("/"),
                    )
            except Exception as e:  # noqa: BLE001 - an older requests/urllib3: the normal path
                log.debug("fast HEAD path unavailable for %s: %s", self.name, e)
        return self._fast

    def head_fast(self, repo: str, ref: str):
        """HEAD a manifest without requests' per-call overhead (~0.4 ms of client CPU instead of
        ~1 ms: warm scans and replication diffs are HEAD-bound), through the same retry
        decision and error mapping; a 401 challenge is answered once like in ``request``.
        Returns ``SLOW`` for ``request`` to do the call when the fast path cannot answer (a
        redirect, a 200 without Docker-Content-Digest)."""
        fast = self._fast_pool()
        if not fast:
            return SLOW
        call = self._call("HEAD", self.url + f"/v2/{repo}/manifests/{ref}", repo)
        key = scope_key("HEAD", repo, "")

        def attempt():
            status, h = self._fast_send(fast, f"/v2/{repo}/manifests/{ref}", key)
            if status == 401 and self.auth.answer(h.get("WWW-Authenticate", ""), key, []):
                status, h = self._fast_send(fast, f"/v2/{repo}/manifests/{ref}", key)
            return self._fast_answer(call, status, h)

        return self._run(call, attempt)

    def _fast_send(self, fast, path: str, key: str):
        pool, timeout, prefix = fast
        headers = {"Accept": ACCEPT_MANIFESTS, "User-Agent": self.session.headers.get("User-Agent", "")}
        headers.update(self.auth.headers(key))
        with self._inflight:
            r = pool.urlopen(
                "HEAD",
                prefix + path,
                headers=headers,
                retries=False,
                timeout=timeout,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                status, h = r.status, r.headers
            finally:
                r.drain_conn()
                r.release_conn()
        self._count("HEAD")
        return status, h

    @staticmethod
    def _fast_answer(call: Call, status: int, h):
        digest = h.get("Docker-Content-Digest")
        if status == 200 and digest:
            return ManifestHead(
                digest, (h.get("Content-Type") or "").split(";")[0], int(h.get("Content-Length") or 0)
            )
        if status == 404:
            return None
        if status == 200 or 300 <= status < 400:
            return SLOW
        raise error_for_status(call, status, retry_after=parse_retry_after(h.get("Retry-After")))


def next_link(link: str | None) -> str | None:
    """The ``rel="next"`` target of a Link header (catalog, tags and referrers pages)."""
    if not link:
        return None
    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return m.group(1) if m else None
