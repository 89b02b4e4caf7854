"""A programmable fault-injecting reverse proxy on 127.0.0.1.

Forwards every request to ``upstream_url`` (bodies streamed both ways), rewrites absolute
``Location`` headers that point at the upstream so uploads keep going through the proxy,
and injects faults that match in order and are consumed:

- ``reset``  close the connection without any response (TCP RST)
- ``status`` reply ``status`` (e.g. 503/502/401) with an empty body, or ``body`` when given
- ``429``    reply 429 with ``Retry-After: retry_after``
- ``slow``   sleep ``delay`` seconds, then forward normally
- ``reset_body``  forward, send the status line, the headers (full Content-Length) and part of
                  the body, then reset the connection (TCP RST): a reset while reading the body
- ``truncate``    forward, announce the full Content-Length, send only part of the body, then
                  close the connection (FIN): a body cut short
- ``reset_after`` forward, read the whole answer, then reset the connection before sending any
                  of it: the request took effect upstream, the client never hears (a lost answer)
- ``garbage``     forward; a 2xx answer with a body gets only the first half of the real body,
                  with a Content-Length that matches it: a well-framed body that is not valid
                  JSON (nor the bytes its digest names). Other answers pass unchanged.

``part`` (a fraction of the body, default 0.5) sets how much the body faults send. On an answer
without a body (HEAD, 204) ``reset_body`` and ``truncate`` reset / close right after the headers.

Faults at a rate: ``random_faults(p, seed=..., ...)`` (tests/support/faultrate.py) faults each
response with probability ``p``, a kind drawn from a weighted set, seeded, never more than
``max_in_row`` times in a row for one request; explicit faults (above) still come first.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import urlsplit

from tests.support.faultrate import FaultRate

__all__ = ["FaultProxy", "Fault", "ProxyRecord"]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}
_CHUNK = 64 * 1024
_KINDS = ("reset", "status", "429", "slow", "reset_body", "truncate", "garbage", "reset_after")
_BODY_FAULTS = ("reset_body", "truncate", "garbage")


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path_regex: str | None = None
    times: int = 1
    retry_after: str | int | float | None = None
    delay: float | None = None
    status: int | None = None
    headers: dict | None = None
    part: float = 0.5
    body: bytes | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_regex and not re.search(self.path_regex, path):
            return False
        return True


class ProxyRecord(NamedTuple):
    method: str
    path: str  # request target as received (path + query)
    status: int | None  # status sent to the client; None when the connection was reset
    fault: str | None  # fault kind injected, None when forwarded untouched


class _BodyReader:
    """File-like view of exactly ``length`` bytes of the client body (for http.client)."""

    def __init__(self, rfile, length: int) -> None:
        self.rfile, self.left = rfile, length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.rfile.read(n)
        self.left -= len(data)
        if not data:
            self.left = 0
        return data


def _chunked_body(rfile):
    """Decode a chunked request body into an iterator of chunks."""
    while True:
        line = rfile.readline(65537)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        data = rfile.read(size)
        rfile.readline(65537)  # CRLF after chunk
        yield data


class FaultProxy:
    def __init__(
        self, upstream_url: str, *, upstream_verify: bool | str = True, timeout: float = 60.0
    ) -> None:
        up = urlsplit(upstream_url.rstrip("/"))
        if up.scheme not in ("http", "https"):
            raise ValueError(f"upstream_url must be http(s)://host:port, not {upstream_url!r}")
        self.upstream_url = f"{up.scheme}://{up.netloc}"
        self._up_scheme, self._up_netloc = up.scheme, up.netloc
        self._up_host = up.hostname
        self._up_port = up.port or (443 if up.scheme == "https" else 80)
        self._ssl_ctx = None
        if up.scheme == "https":
            if upstream_verify is False:
                ctx = ssl._create_unverified_context()
            elif isinstance(upstream_verify, str):
                ctx = ssl.create_default_context(cafile=upstream_verify)
            else:
                ctx = ssl.create_default_context()
            self._ssl_ctx = ctx
        self.timeout = timeout
        self.faults: list[Fault] = []
        self.rate: FaultRate | None = None
        self.requests: list[ProxyRecord] = []
        self._lock = threading.Lock()

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # idle keep-alive client connections end eventually

            def log_message(self, *args):
                pass

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (TimeoutError, ConnectionError, BrokenPipeError):
                    self.close_connection = True

            def _any(self):
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="faultproxy", daemon=True
        )
        self._thread.start()

    # -- faults ----------------------------------------------------------------------
    def add_fault(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_regex: str | None = None,
        times: int = 1,
        retry_after: str | int | float | None = None,
        delay: float | None = None,
        status: int | None = None,
        headers: dict | None = None,
        part: float = 0.5,
        body: bytes | None = None,
    ) -> Fault:
        kind = str(kind)
        if kind not in _KINDS:
            raise ValueError(f"fault kind must be one of {_KINDS}, not {kind!r}")
        if kind == "status" and not status:
            raise ValueError("fault kind 'status' needs status=")
        if kind == "slow" and delay is None:
            raise ValueError("fault kind 'slow' needs delay=")
        if not 0 <= part < 1:
            raise ValueError("part is the fraction of the body sent: 0 <= part < 1")
        fault = Fault(kind, method, path_regex, times, retry_after, delay, status, headers, part, body)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.times for f in self.faults if f.times > 0)

    def clear(self) -> None:
        """Forget the recorded requests (pending faults stay; see :meth:`clear_faults`)."""
        with self._lock:
            self.requests.clear()

    def random_faults(self, p: float, **kwargs) -> FaultRate:
        """Fault each response with probability ``p`` from now on (see faultrate.FaultRate for
        the options: seed, weights, method, path_regex, max_in_row, retry_after, delay, part);
        ``.injected`` of the answer counts what was injected per kind."""
        rate = FaultRate(p, **kwargs)
        with self._lock:
            self.rate = rate
        return rate

    def stop_random_faults(self) -> None:
        with self._lock:
            self.rate = None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.times -= 1
                    return f
            rate = self.rate
        kind = rate.decide(method, path) if rate is not None else None
        if kind is None:
            return None
        if kind == "503":
            return Fault("status", status=503)
        return Fault(kind, retry_after=rate.retry_after, delay=rate.delay, part=rate.part)

    def _record(self, *args) -> None:
        with self._lock:
            self.requests.append(ProxyRecord(*args))

    # -- forwarding ------------------------------------------------------------------
    def _body_iter(self, h: BaseHTTPRequestHandler):
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return _chunked_body(h.rfile), True
        length = int(h.headers.get("Content-Length") or 0)
        return (_BodyReader(h.rfile, length) if length else None), False

    @staticmethod
    def _drain(body) -> None:
        if body is None:
            return
        if hasattr(body, "read"):
            while body.read(_CHUNK):
                pass
        else:
            for _ in body:
                pass

    def _connect(self) -> http.client.HTTPConnection:
        if self._up_scheme == "https":
            return http.client.HTTPSConnection(
                self._up_host, self._up_port, timeout=self.timeout, context=self._ssl_ctx
            )
        return http.client.HTTPConnection(self._up_host, self._up_port, timeout=self.timeout)

    def _rewrite_location(self, value: str) -> str:
        up = urlsplit(value)
        if up.scheme and up.netloc == self._up_netloc:
            rest = value.split(up.netloc, 1)[1]
            return f"{self.url}{rest}"
        return value

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        body, chunked = self._body_iter(h)
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind == "reset":
            self._drain(body)
            self._record(method, path, None, "reset")  # recorded before the client sees the reset
            self._reset(h)
            return
        if fault is not None and fault.kind in ("status", "429"):
            self._drain(body)
            status = 429 if fault.kind == "429" else int(fault.status)
            h.send_response(status)
            if fault.kind == "429":
                h.send_header("Retry-After", str(fault.retry_after if fault.retry_after is not None else 1))
            for k, v in (fault.headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(fault.body or b"")))
            self._record(method, path, status, fault.kind)  # before the client can see the answer
            h.end_headers()
            if fault.body and method != "HEAD":
                h.wfile.write(fault.body)
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(float(fault.delay or 0))

        conn = self._connect()
        try:
            resp = self._forward(h, conn, body, chunked)
            if resp is None:
                return
            if fault is not None and fault.kind == "reset_after":
                resp.read()
                self._record(method, path, None, "reset_after")
                self._reset(h)
                return
            if fault is not None and fault.kind in _BODY_FAULTS:
                self._relay_faulty(h, resp, fault)
            else:
                self._relay(h, resp, "slow" if fault is not None else None)
        finally:
            conn.close()

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        """End the client connection with a TCP RST; nothing more reaches the client."""
        h.close_connection = True
        try:
            h.wfile.flush()
        except OSError:
            pass
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.wfile = _NullWriter()  # nothing more reaches the client; the RST is the answer
        h.connection.close()

    def _forward(self, h: BaseHTTPRequestHandler, conn, body, chunked: bool):
        """Send the client's request upstream; the upstream response, or None when the upstream
        failed (the client then got a 502)."""
        method, path = h.command, h.path
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
        headers["Host"] = self._up_netloc
        headers["X-Forwarded-For"] = h.client_address[0]
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                if chunked and k.lower() == "content-length":
                    continue
                conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            if body is not None:
                if chunked:
                    for piece in body:
                        if piece:
                            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.send(b"0\r\n\r\n")
                else:
                    while True:
                        piece = body.read(_CHUNK)
                        if not piece:
                            break
                        conn.send(piece)
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drain(body)
            msg = f"fault proxy: upstream {self.upstream_url} failed: {exc}".encode()
            h.send_response(502)
            h.send_header("Content-Length", str(len(msg)))
            self._record(method, path, 502, None)
            h.end_headers()
            h.wfile.write(msg)
            return None

    def _send_head(self, h: BaseHTTPRequestHandler, resp, length: str | None) -> None:
        """Status line and headers of ``resp``; Content-Length replaced by ``length`` unless None."""
        h.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            kl = k.lower()
            if kl in _HOP_BY_HOP or (length is not None and kl == "content-length"):
                continue
            if kl == "location":
                v = self._rewrite_location(v)
            h.send_header(k, v)
        if length is not None:
            h.send_header("Content-Length", length)

    def _relay(self, h: BaseHTTPRequestHandler, resp, fault_kind: str | None) -> None:
        method, path = h.command, h.path
        length = resp.getheader("Content-Length")
        no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        self._send_head(h, resp, None)
        use_chunked = not no_body and length is None
        if use_chunked:
            h.send_header("Transfer-Encoding", "chunked")
        self._record(method, path, resp.status, fault_kind)
        h.end_headers()
        if not no_body:
            while True:
                piece = resp.read(_CHUNK)
                if not piece:
                    break
                if use_chunked:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    h.wfile.write(piece)
            if use_chunked:
                h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _relay_faulty(self, h: BaseHTTPRequestHandler, resp, fault: Fault) -> None:
        """``reset_body`` / ``truncate`` / ``garbage``: the upstream answer, its body cut."""
        method, path = h.command, h.path
        no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        data = b"" if no_body else resp.read()
        cut = data[: int(len(data) * fault.part)]
        if fault.kind == "garbage":
            if not (200 <= resp.status < 300 and data):
                self._send_head(h, resp, None if no_body else str(len(data)))
                self._record(method, path, resp.status, None)  # nothing to spoil: passed unchanged
                h.end_headers()
                h.wfile.write(data)
                h.wfile.flush()
                return
            self._send_head(h, resp, str(len(cut)))
        else:
            self._send_head(h, resp, None if no_body else str(len(data)))
        self._record(method, path, resp.status, fault.kind)  # before the client sees the answer
        h.end_headers()
        h.wfile.write(cut)
        h.wfile.flush()
        if fault.kind == "reset_body":
            self._reset(h)
        elif fault.kind == "truncate":
            h.close_connection = True

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FaultProxy(url={self.url!r}, upstream={self.upstream_url!r})"


class _NullWriter:
    closed = False

    def write(self, data) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
