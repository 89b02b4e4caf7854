"""A loopback HTTP server that records every POST (alert webhooks)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver", "ReceivedRequest"]


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # parsed JSON body, or None when the body is not JSON

    @property
    def method(self) -> str:
        return "POST"


class WebhookReceiver:
    """Records POSTs in ``.received``; answers ``status`` (settable; or a list consumed in order,
    then 200) with a small JSON body."""

    def __init__(self, status: int | list[int] = 200) -> None:
        self.received: list[ReceivedRequest] = []
        self.status = status
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                status = receiver._next_status()
                with receiver._lock:
                    receiver.received.append(
                        ReceivedRequest(self.path, dict(self.headers.items()), body, parsed)
                    )
                data = b'{"ok": true}' if status < 400 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook", daemon=True
        )
        self._thread.start()

    def _next_status(self) -> int:
        with self._lock:
            if isinstance(self.status, list):
                return self.status.pop(0) if self.status else 200
            return int(self.status)

    def wait_for(self, count: int = 1, timeout: float = 60.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"webhook got {len(self.received)} POSTs, expected {count} within {timeout}s"
                )
            time.sleep(0.02)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"WebhookReceiver(url={self.url!r}, received={len(self.received)})"
