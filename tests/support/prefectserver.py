"""A real ``prefect server start`` on 127.0.0.1 (its own PREFECT_HOME and SQLite database, UI
off), for the tests and benchmarks that need a server a separate process (CLI, worker) can reach.
Stopped by its PID (``proc.stop``)."""

import sys
from pathlib import Path

from tests.support.procs import PORT_ATTEMPTS, ManagedProcess, PortInUse, free_port, wait_http_ready


def start_prefect_server(home: Path, env: dict) -> tuple[ManagedProcess, str]:
    """Start the server with ``env`` (PREFECT_API_URL removed, the database under ``home``);
    returns (process, API URL) once /health answers from it. A port taken between choosing and
    binding it: started again on a fresh one."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _start(home, env, free_port())
        except PortInUse:
            if attempt + 1 >= PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _start(home: Path, env: dict, port: int) -> tuple[ManagedProcess, str]:
    env = dict(env)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    env["PREFECT_UI_ENABLED"] = "false"
    proc = ManagedProcess(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log_path=home / "server.log",
    ).start()
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http_ready(proc, "prefect server", f"{api}/health", lambda s: s == 200, timeout=180)
    except BaseException:
        proc.stop(timeout=15)
        raise
    return proc, api
