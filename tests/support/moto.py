"""A real ``moto_server`` process (S3 API) on 127.0.0.1."""

from __future__ import annotations

import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import boto3
import requests
from botocore.config import Config

from tests.support.procs import ManagedProcess, free_port, retry_taken_port, wait_http_ready

__all__ = ["MotoServer", "MotoRequest", "ACCESS_KEY", "SECRET_KEY", "REGION"]

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"

# werkzeug request lines: 127.0.0.1 - - [25/Nov/2026 20:27:09] "PUT /bbb/a/b.txt HTTP/1.1" 200 -
_MARK = "rk-log-mark"  # the query of the marker request (see MotoServer._log_mark)
_LINE_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


class MotoRequest(NamedTuple):
    method: str
    path: str  # "/bucket/key" (path-style), no query
    status: int
    query: str = ""


class MotoServer:
    def __init__(
        self, port: int | None = None, log_dir: str | None = None, ready_timeout: float = 60.0
    ) -> None:
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="moto-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "moto.log"
        self._offset = 0
        self._pick_port(port)
        if port:  # the caller's port: no other to move to
            self._start(ready_timeout)
        else:
            retry_taken_port(lambda: self._start(ready_timeout), self._pick_port)

    def _pick_port(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _start(self, ready_timeout: float) -> None:
        script = shutil.which("moto_server")
        args = [script] if script else [sys.executable, "-m", "moto.server"]
        args += ["-H", "127.0.0.1", "-p", str(self.port)]
        self._proc = ManagedProcess(args, log_path=self.log_path).start()
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        wait_http_ready(
            self._proc,
            "moto_server",
            f"{self.endpoint}/moto-api/",
            lambda st: st < 500,
            timeout=timeout,
            interval=0.1,
            stop=self.stop,
        )
        self._offset = self._log_size()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def s3_config(self, bucket: str) -> dict:
        """The dict RegistryServer(storage="s3", s3=...) expects."""
        return {
            "endpoint": self.endpoint,
            "bucket": bucket,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
        }

    def client(self, service: str = "s3"):
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            verify=False,  # plain http endpoint: nothing to verify; keeps AWS_CA_BUNDLE out of the way
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Drop all moto state (buckets, objects)."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10, verify=False).raise_for_status()

    # -- request log -----------------------------------------------------------------
    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_mark(self) -> None:
        """werkzeug logs a request right after its response is written, so a line may still be
        missing when the client has its answer (more so on a loaded machine): send a marker
        request and wait (up to 60 s) for its line; the earlier requests' lines are there then."""
        mark = f"{_MARK}={secrets.token_hex(8)}"
        try:
            requests.get(f"{self.endpoint}/moto-api/?{mark}", timeout=10, verify=False)
        except requests.RequestException:
            return  # not answering (stopped): nothing more will be written
        deadline = time.monotonic() + 60.0
        while mark.encode() not in self.log_path.read_bytes()[self._offset :]:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def request_log(self, settle: float = 0.1) -> list[MotoRequest]:
        """Requests moto served since the last :meth:`clear_request_log` (werkzeug log lines;
        the marker requests left out)."""
        self._log_mark()
        time.sleep(settle)
        data = self.log_path.read_bytes()[self._offset :].decode(errors="replace")
        out = []
        for line in data.splitlines():
            m = _LINE_RE.search(line)
            if m:
                path, _, query = m.group("uri").partition("?")
                if query.startswith(_MARK + "="):
                    continue
                out.append(MotoRequest(m.group("method"), path, int(m.group("status")), query))
        return out

    def clear_request_log(self) -> None:
        self._log_mark()
        self._offset = self._log_size()

    def object_puts(self, bucket: str, prefix: str = "") -> list[MotoRequest]:
        """Single-request object writes (PUT /bucket/key without multipart partNumber)."""
        want = f"/{bucket}/{prefix}"
        return [
            r
            for r in self.request_log()
            if r.method == "PUT"
            and r.path.startswith(want)
            and r.path != f"/{bucket}"
            and "partNumber=" not in r.query
        ]

    def stop(self) -> None:
        self._proc.stop()

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MotoServer(endpoint={self.endpoint!r}, pid={self.pid})"
