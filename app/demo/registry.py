"""The demo's registries: ``docker-registry serve`` with our own config on a free 127.0.0.1
port, stopped by PID."""

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import requests
import yaml

REGISTRY_BIN = "/usr/bin/docker-registry"
PORT_ATTEMPTS = 5
IDENT_HEADER = "X-Regkeeper-Demo"


class PortTakenError(RuntimeError):
    """The chosen port was bound by another process before the registry could bind it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoRegistry:
    """``docker-registry serve`` with our own config on a free loopback port; stopped by PID."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = Path(root)
        self.storage = self.dir / "storage"
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.pid_path = self.dir / "registry.pid"
        self.ident = os.urandom(8).hex()
        self._pick_port()
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def _pick_port(self) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    def write_config(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": hashlib.sha256(os.urandom(16)).hexdigest(),
                # which process answers: ours, not another that took the port first
                "headers": {"X-Content-Type-Options": ["nosniff"], IDENT_HEADER: [self.ident]},
            },
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self, timeout: float = 60.0) -> "DemoRegistry":
        """Start and wait until ``/v2/`` answers. The port was free when chosen; another process
        may bind it first: then start again on a fresh one (a few times), before anyone has
        the URL."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self._start(timeout)
            except PortTakenError:
                self._pick_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> "DemoRegistry":
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
        self._log = open(self.log_path, "ab", buffering=0)
        log_start = self._log.tell()
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config_path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid_path.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = requests.get(f"{self.url}/v2/", timeout=2, verify=True)
                if r.status_code == 200 and r.headers.get(IDENT_HEADER) == self.ident:
                    return self
                last = f"HTTP {r.status_code}" + ("" if IDENT_HEADER in r.headers else " from another server")
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        logged = self.log_path.read_bytes()[log_start:].decode(errors="replace")
        self.stop()
        why = f"{self.name}: docker-registry at {self.url} did not start ({last}); log {self.log_path}:\n"
        if "address already in use" in logged:
            raise PortTakenError(why + logged[-2000:])
        raise RuntimeError(why + logged[-2000:])

    def stop(self, timeout: float = 5.0) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.terminate()  # this PID only
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=timeout)
            self.proc = None
            self.pid_path.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def detach(self) -> None:
        """Leave the process running after this program exits (--keep-running); the pid file
        stays, and :meth:`stop` still works from this process."""
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def tag_link(self, repo: str, tag: str) -> Path:
        return (
            self.storage / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link"
        )
