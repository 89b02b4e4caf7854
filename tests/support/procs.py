"""Process helpers for the real-process test stack.

Every process started through :class:`ManagedProcess` is remembered in a
module-level set and stopped by its PID (terminate, wait, kill) either
explicitly, by the context manager, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "free_port",
    "dead_port",
    "wait_port",
    "wait_until",
    "listens",
    "retry_taken_port",
    "ManagedProcess",
    "PortInUse",
    "LIVE_PROCESSES",
    "PORT_ATTEMPTS",
]

LIVE_PROCESSES: set[ManagedProcess] = set()
_LOCK = threading.Lock()
PORT_ATTEMPTS = 5  # starts on a fresh port when the chosen one was taken meanwhile
# how a server says its port is taken: Go and postgres ("address already in use"), werkzeug
# (moto: "Port N is in use by another program"), prefect ("Port N is already in use")
_PORT_TAKEN = re.compile(r"address already in use|port \d+ is (?:already )?in use", re.IGNORECASE)


class PortInUse(RuntimeError):
    """A process could not bind its port: something took it between free_port() and the bind."""


# Ports free_port() handed out stay bound here (SO_REUSEADDR, never listening), the newest
# HELD_PORTS of them: no other process can bind one (bind(0) skips it, an explicit bind without
# SO_REUSEADDR fails, an outgoing connect never picks it), yet a server that sets SO_REUSEADDR
# (Go's net.Listen, Python's socketserver, uvicorn, postgres: every server the tests start)
# binds and listens on it; a connect while nothing listens is refused.
HELD_PORTS = 256
_HELD: collections.deque[socket.socket] = collections.deque()


def free_port() -> int:
    """A TCP port on 127.0.0.1 held for the caller's server (see HELD_PORTS): between choosing
    and binding it, and across the server's restarts, no other process takes it. A server that
    cannot bind it anyway retries on a fresh port (:func:`retry_taken_port`), and readiness
    checks that the answer comes from its own process (:func:`listens`)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    with _LOCK:
        _HELD.append(s)
        while len(_HELD) > HELD_PORTS:
            _HELD.popleft().close()
    return s.getsockname()[1]


@contextmanager
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 nothing listens on while the block runs: held bound but not
    listening, so a connect is refused and no other process can take it meanwhile (a port
    free_port() chose, or a stopped server's, may be bound again by someone else before the
    test connects, and then answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def retry_taken_port(attempt, repick, attempts: int = PORT_ATTEMPTS):
    """``attempt()``; when it raises :class:`PortInUse`, ``repick()`` new ports and try again
    (at most ``attempts`` times; the last PortInUse is raised, naming the port)."""
    for n in range(attempts):
        try:
            return attempt()
        except PortInUse:
            if n + 1 >= attempts:
                raise
            repick()
    raise AssertionError("unreachable")  # pragma: no cover


def _listen_inodes(port: int) -> set[str] | None:
    """Socket inodes LISTENing on TCP ``port`` (any address), from /proc/net/tcp{,6}; None
    when neither table can be read (no way to tell whose the port is)."""
    out: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
            readable = True
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.add(f[9])
    return out if readable else None


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server may listen from a child: uvicorn under prefect)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return out


def listens(pid: int | None, port: int) -> bool:
    """True when process ``pid`` (or a descendant) holds the socket listening on ``port``: the
    answer on the port is ours, not another process's that took the port first. Where /proc
    cannot say (no /proc/net/tcp), True: the check is a guard, not a requirement."""
    if pid is None:
        return False
    inodes = _listen_inodes(port)
    if inodes is None:
        return True
    want = {f"socket:[{i}]" for i in inodes}
    if not want:
        return False
    for p in _tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}") in want:
                    return True
            except OSError:
                continue
    return False


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
    """Poll ``url`` until ``ok(status)`` from a socket ``proc`` listens on (not another process
    that took the port); the process must stay alive. When it exits (:class:`PortInUse` when
    its port was taken) or on timeout, call ``stop`` (the owner's stop, so nothing is left
    running) and raise with the process's log tail."""
    import requests

    port = urlsplit(url).port
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            proc.check_alive()
        except RuntimeError:
            (stop or proc.stop)()
            raise
        try:
            r = requests.get(url, timeout=5, verify=verify)
            if ok(r.status_code):
                if port is None or listens(proc.pid, port):
                    return
                last = f"HTTP {r.status_code} from a process other than pid {proc.pid} on port {port}"
            else:
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
        self._log_start = 0

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
        self._log_start = self._log_file.tell()
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
        """Raise with the log tail if the process has exited: :class:`PortInUse` when what it
        logged since this start (a restart appends to the same log) says its port was taken."""
        if self._proc is not None and self._proc.poll() is not None:
            msg = (
                f"{self.args[0]} exited with {self._proc.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )
            try:
                since = self.log_path.read_bytes()[self._log_start :]
            except FileNotFoundError:
                since = b""
            if _PORT_TAKEN.search(since.decode(errors="replace")):
                raise PortInUse(f"port taken by another process since it was chosen: {msg}")
            raise RuntimeError(msg)

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
