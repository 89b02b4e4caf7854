"""A real PostgreSQL (Debian's postgresql 15) on 127.0.0.1 for the pull store's production
option: ``initdb`` in a temporary directory, ``postgres`` on a free port, trust auth for a test
user, stopped by PID (SIGINT: PostgreSQL's fast shutdown). As root, the server runs as the
``postgres`` user (``setpriv``: no intermediate process, so the PID is the server's)."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.procs import ManagedProcess, free_port, listens, retry_taken_port, wait_until

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "postgres").exists()


class PostgresServer:
    def __init__(self) -> None:
        if not available():
            raise RuntimeError(f"{BIN}/postgres is missing: install the Debian package 'postgresql'")
        self.base = Path(tempfile.mkdtemp(prefix="rk-pg-"))
        self.data = self.base / "data"
        self.user = "regkeeper"
        self._pick_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.base, 0o755)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._as = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"]
        self._proc: ManagedProcess | None = None

    def start(self) -> "PostgresServer":
        subprocess.run(
            [
                *self._as,
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        retry_taken_port(self._serve, self._pick_port)
        return self

    def _pick_port(self) -> None:
        self.port = free_port()
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _serve(self) -> None:
        args = [str(BIN / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)]
        args += ["-k", str(self.base), "-c", "fsync=off", "-c", "full_page_writes=off"]
        self._proc = ManagedProcess([*self._as, *args], log_path=self.base / "postgres.log").start()
        try:
            wait_until(self._ready, timeout=120, interval=0.2, what="postgres to accept connections")
        except BaseException:
            self._proc.stop()
            self._proc = None
            raise

    def _ready(self) -> bool:
        assert self._proc is not None
        self._proc.check_alive()
        r = subprocess.run(
            [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            timeout=10,
        )
        return r.returncode == 0 and listens(self._proc.pid, self.port)  # ours, not another's

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._n = getattr(self, "_n", 0) + 1
        name = f"pulls_{os.getpid()}_{self._n}"
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.pid is not None and proc.running():
            os.kill(proc.pid, signal.SIGINT)  # fast shutdown, this PID only
            deadline = time.monotonic() + 15
            while proc.running() and time.monotonic() < deadline:
                time.sleep(0.1)
        if proc is not None:
            proc.stop()
        self._proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
