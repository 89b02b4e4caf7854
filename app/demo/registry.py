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
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

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
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self, timeout: float = 20.0) -> "DemoRegistry":
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
        self._log = open(self.log_path, "ab", buffering=0)
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
                if r.status_code == 200:
                    return self
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(
            f"{self.name}: docker-registry at {self.url} did not start ({last}); log {self.log_path}:\n{tail}"
        )

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
