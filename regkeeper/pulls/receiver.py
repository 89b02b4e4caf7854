"""The pull-event receiver: ``POST /events/<registry>`` from distribution's notifications,
``GET /metrics`` (Prometheus), ``GET /healthz``.

The registry blocks its notification queue on a slow endpoint, so the request path only reads
the body, checks the token, parses, and writes one SQLite/PostgreSQL transaction: no network
call. Answers: 200 stored (or nothing to store), 400 not an envelope, 401 token mismatch,
404 unknown registry name in the path, 413 too large, 503 the store failed (distribution
retries every non-2xx answer with its backoff, so nothing is lost while we recover).

The registry authenticates with ``Authorization: Bearer <pulls.token>`` (the endpoint's
``headers`` in the registry config); a mismatch is counted
(``regkeeper_pull_events_rejected_total{reason="token"}``) and logged without the header.
"""

import hmac
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..config import Config
from ..errors import ConfigError, RegkeeperError
from ..util import utcnow
from .events import EnvelopeError, parse_envelope
from .store import SEEN_RETENTION, PullStore

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024
# what /metrics exposes (the alert rules in deployments/monitoring may use these names)
RECEIVER_METRICS = frozenset(
    {
        "regkeeper_pull_events_received_total",
        "regkeeper_pull_events_rejected_total",
        "regkeeper_pull_events_stored_total",
        "regkeeper_pull_events_excluded_total",
        "regkeeper_pull_events_duplicate_total",
        "regkeeper_pull_last_event_timestamp_seconds",
        "regkeeper_pull_envelope_seconds",
    }
)


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "regkeeper_pull_events_received", "Events received in envelopes", ["registry"], registry=r
        )
        self.rejected = Counter(
            "regkeeper_pull_events_rejected", "Envelopes rejected", ["registry", "reason"], registry=r
        )
        self.stored = Counter(
            "regkeeper_pull_events_stored", "Manifest pulls stored", ["registry"], registry=r
        )
        self.excluded = Counter(
            "regkeeper_pull_events_excluded", "Manifest pulls dropped by user agent", ["registry"], registry=r
        )
        self.duplicate = Counter(
            "regkeeper_pull_events_duplicate",
            "Manifest pulls sent again (an envelope retried after it was stored): not counted twice",
            ["registry"],
            registry=r,
        )
        self.last_event = Gauge(
            "regkeeper_pull_last_event_timestamp_seconds",
            "When the last envelope was stored",
            ["registry"],
            registry=r,
        )
        self.seconds = Histogram(
            "regkeeper_pull_envelope_seconds",
            "Time to answer one envelope",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )


class PullReceiver:
    """``PullReceiver(config).start()`` serves in a thread (``.url``, ``.stop()``);
    ``serve_forever()`` blocks. ``now`` is the clock (tests)."""

    def __init__(
        self,
        config: Config,
        store: PullStore | None = None,
        *,
        listen: tuple[str, int] | None = None,
        now: Callable[[], datetime] = utcnow,
    ):
        if config.pulls is None:
            raise ConfigError(f"{config.source or 'config'}: no `pulls` section (the receiver's settings)")
        self.pc = config.pulls
        self.token = self.pc.token.get() if self.pc.token is not None else None
        host, port = listen or self.pc.host_port
        if self.token is None and host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(
                f"{config.source or 'config'}: pulls.token: required when the receiver listens on "
                f"{host} (anyone reaching it could write pull history)"
            )
        self.registries = {r.name for r in config.mirror_repositories}
        self.exclude = list(self.pc.exclude.user_agents)
        self.now = now
        self.metrics = ReceiverMetrics()
        self.store = store or PullStore(config.pulls_store_url())
        self._own_store = store is None
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as e:
            if self._own_store:
                self.store.close()
            what = "--listen" if listen else "pulls.listen"
            raise RegkeeperError(
                f"pull receiver: cannot listen on {host}:{port} ({what}): {e.strerror or e}"
            ) from None
        self.httpd.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pruned = now()  # per-day pulls last pruned (pulls.dayRetention)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def _begin(self) -> None:
        gaps = self.store.receiver_started(self.now(), self.pc.gap_tolerance.total_seconds())
        for g in gaps[:1]:
            log.warning("pull receiver was down from %s to %s: recorded as a gap", g.start, g.end)
        self._prune_days()
        t = threading.Thread(target=self._beat, name="pulls-heartbeat", daemon=True)
        t.start()
        self._threads.append(t)

    def _beat(self) -> None:
        while not self._stop.wait(self.pc.heartbeat.total_seconds()):
            try:
                self.store.heartbeat(self.now())
            except Exception as e:  # noqa: BLE001 - a failed beat shows later as a gap
                log.warning("pull receiver heartbeat failed: %s", e)
            if self.now() - self._pruned >= timedelta(days=1):
                self._prune_days()

    def _prune_days(self) -> None:
        """``pulls.dayRetention``: per-day pull counts older than it are dropped (at start, then
        once a day)."""
        self._pruned = self.now()
        try:
            self.store.prune_seen(self._pruned - SEEN_RETENTION)
            n = self.store.prune_days(self._pruned - self.pc.day_retention)
        except Exception as e:  # noqa: BLE001 - retried tomorrow; the pulls themselves are stored
            log.warning("pull receiver: pruning per-day pulls failed: %s", e)
            return
        if n:
            log.info("pull receiver: dropped %d per-day pull rows older than dayRetention", n)

    def start(self) -> "PullReceiver":
        self._begin()
        t = threading.Thread(target=self.httpd.serve_forever, name="pulls-http", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("pull receiver listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        self._begin()
        log.info("pull receiver listening on %s", self.url)
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)
        if self._own_store:
            self.store.close()

    # ------------------------------------------------------------------ one envelope

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.token}".encode())

    def handle(self, registry: str, auth: str | None, body: bytes) -> int:
        """The answer's status for one envelope (see the module doc)."""
        m = self.metrics
        if registry not in self.registries:
            m.rejected.labels("unknown", "unknown_registry").inc()
            return 404
        if not self.authorized(auth):
            m.rejected.labels(registry, "token").inc()
            log.warning("pull events for %s rejected: token mismatch", registry)
            return 401
        try:
            parsed = parse_envelope(body, self.exclude)
        except EnvelopeError as e:
            m.rejected.labels(registry, "bad_envelope").inc()
            log.warning("pull events for %s rejected: %s", registry, e)
            return 400
        m.received.labels(registry).inc(parsed.events)
        m.excluded.labels(registry).inc(parsed.excluded)
        try:
            done = self.store.record(registry, parsed.pulls, self.now())
        except Exception as e:  # noqa: BLE001 - answered 503: distribution retries
            m.rejected.labels(registry, "store_error").inc()
            log.error("pull events for %s not stored (the registry will retry): %s", registry, e)
            return 503
        m.stored.labels(registry).inc(len(parsed.pulls) - done.duplicates)
        m.duplicate.labels(registry).inc(done.duplicates)
        m.last_event.labels(registry).set(time.time())
        return 200


def _handler(rx: PullReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "regkeeper-pulls"
        timeout = 60  # a client that stops sending mid-body frees its thread

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            log.debug("%s %s", self.address_string(), format % args)

        def _answer(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                return self._answer(200, generate_latest(rx.metrics.registry), "text/plain; version=0.0.4")
            if self.path == "/healthz":
                return self._answer(200, b"ok\n")
            return self._answer(404)

        def do_POST(self):  # noqa: N802
            t0 = time.perf_counter()
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if not 0 <= n <= MAX_BODY:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                return self._answer(413 if n > MAX_BODY else 400)
            body = self.rfile.read(n)  # always read, so a keep-alive connection stays in step
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 2 or parts[0] != "events":
                return self._answer(404)
            status = rx.handle(parts[1], self.headers.get("Authorization"), body)
            self._answer(status)
            rx.metrics.seconds.observe(time.perf_counter() - t0)

    return Handler
