"""Process helpers for the real-process test stack.

Every process started through :class:`ManagedProcess` is remembered in a
module-level set and stopped by its PID (terminate, wait, kill) either
explicitly, by the context manager, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["free_port", "wait_port", "wait_until", "ManagedProcess", "LIVE_PROCESSES"]

LIVE_PROCESSES: set[ManagedProcess] = set()
_LOCK = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 60.0) -> None:
    """Wait until a TCP connect to host:port succeeds; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s (last error: {last})")


def wait_http_ready(
    proc: ManagedProcess,
    name: str,
    url: str,
    ok,
    *,
    timeout: float,
    verify=False,
    interval: float = 0.05,
    stop=None,
) -> None:
    """Poll ``url`` until ``ok(status)``; the process must stay alive. On timeout call ``stop``
    (the owner's stop, so nothing is left running) and raise with the process's log tail."""
    import requests

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            r = requests.get(url, timeout=5, verify=verify)
            if ok(r.status_code):
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(interval)
    tail = proc.log_tail()
    (stop or proc.stop)()
    raise RuntimeError(f"{name} at {url} not ready after {timeout}s ({last}); log:\n{tail}")


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value; return that value. The timeout is
    generous on purpose (CI is a loaded 2-core machine): it costs nothing when things work."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """A child process whose stdout+stderr go to a log file and which is always stopped by PID."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=Path(self.args[0]).name + "-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ManagedProcess:
        if self.running():
            raise RuntimeError(f"{self.args[0]} already running with pid {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # append mode: a restarted process keeps adding to the same log
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _LOCK:
            LIVE_PROCESSES.add(self)
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate by PID, wait ``timeout`` seconds, then kill. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM to this PID only
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
        finally:
            with _LOCK:
                LIVE_PROCESSES.discard(self)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        return proc.returncode

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.args[0]} exited with {self._proc.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ManagedProcess({self.args[0]!r}, pid={self.pid}, log={str(self.log_path)!r})"


@atexit.register
def _stop_leftovers() -> None:
    with _LOCK:
        leftovers = list(LIVE_PROCESSES)
    for proc in leftovers:
        try:
            proc.stop(timeout=3.0)
        except Exception:  # pragma: no cover - best effort at exit
            pass
