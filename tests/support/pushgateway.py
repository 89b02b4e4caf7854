"""A real Prometheus Pushgateway (Debian ``prometheus-pushgateway``) on 127.0.0.1."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import requests

from tests.support.procs import ManagedProcess, free_port, retry_taken_port, wait_http_ready

__all__ = ["PUSHGATEWAY_BIN", "Pushgateway"]

PUSHGATEWAY_BIN = "/usr/bin/prometheus-pushgateway"


class Pushgateway:
    """In-memory pushgateway (``--persistence.file=""``, admin API on for :meth:`wipe`)."""

    def __init__(self, log_dir: str | os.PathLike | None = None, ready_timeout: float = 60.0) -> None:
        if not os.access(PUSHGATEWAY_BIN, os.X_OK):
            raise RuntimeError(
                f"{PUSHGATEWAY_BIN} is missing: install the Debian package 'prometheus-pushgateway'"
            )
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="pushgateway-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "pushgateway.log"
        self.ready_timeout = ready_timeout
        self._pick_port()
        retry_taken_port(self._start, self._pick_port)

    def _pick_port(self) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    def _start(self) -> None:
        self._proc = ManagedProcess(
            [
                PUSHGATEWAY_BIN,
                f"--web.listen-address={self.host}",
                "--persistence.file=",  # never touch the packaged service's /var/lib file
                "--web.enable-admin-api",
            ],
            log_path=self.log_path,
        ).start()
        wait_http_ready(
            self._proc,
            "pushgateway",
            f"{self.url}/-/ready",
            lambda st: st == 200,
            timeout=self.ready_timeout,
            stop=self.stop,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def metrics_text(self) -> str:
        r = requests.get(f"{self.url}/metrics", timeout=10, verify=False)
        r.raise_for_status()
        return r.text

    def wipe(self) -> None:
        """Delete every pushed group (admin API)."""
        requests.put(f"{self.url}/api/v1/admin/wipe", timeout=10, verify=False).raise_for_status()

    def stop(self) -> None:
        self._proc.stop()

    def __enter__(self) -> Pushgateway:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Pushgateway(url={self.url!r}, pid={self.pid})"
