"""The OCI 1.1 referrers-API registry (tests/go/referrers-registry: go-containerregistry's
pkg/registry with WithReferrersSupport) on 127.0.0.1.

It keeps manifests in memory (blobs too, unless ``blobs_dir``): a stop loses everything, there is
no read-only mode and no garbage collection. It writes distribution's access-log line format,
so :meth:`access_log` / :meth:`clear_access_log` are RegistryServer's, unchanged. See the Go
package comment for what it supports and what ``spec_fixes`` changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.gotools import go_tool_path, missing_go_tool_message
from tests.support.procs import ManagedProcess, free_port, listens, retry_taken_port, wait_until
from tests.support.registry import RegistryServer

__all__ = ["ReferrersRegistryServer"]


class ReferrersRegistryServer:
    def __init__(
        self,
        tmpdir: str | os.PathLike,
        *,
        spec_fixes: bool = True,
        blobs_dir: str | os.PathLike | None = None,
        start: bool = True,
        ready_timeout: float = 60.0,
    ) -> None:
        path = go_tool_path("referrers-registry")
        if path is None:
            raise RuntimeError(missing_go_tool_message("referrers-registry"))
        self.binary = str(path)
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec_fixes = spec_fixes
        self.blobs_dir = Path(blobs_dir) if blobs_dir else None
        self.ready_timeout = ready_timeout
        self._pick_port()
        self.root: Path | None = None  # no filesystem layout to inspect
        self.log_path = self.dir / "referrers-registry.log"
        self._log_offset = 0
        self._proc: ManagedProcess | None = None
        if start:  # nobody holds the URL yet: a port taken meanwhile is traded for a fresh one
            retry_taken_port(self.start, self._pick_port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def args(self) -> list[str]:
        args = [self.binary, "-port", str(self.port), f"-spec-fixes={str(self.spec_fixes).lower()}"]
        if self.blobs_dir is not None:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            args += ["-blobs-dir", str(self.blobs_dir)]
        return args

    def _pick_port(self) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    def start(self) -> ReferrersRegistryServer:
        """Start on the same port; after a stop the registry is empty (memory only)."""
        self._log_offset = len(self._read_log_bytes())
        self._proc = ManagedProcess(self.args(), log_path=self.log_path).start()
        proc = self._proc

        def ready() -> bool:
            proc.check_alive()
            logged = self._read_log_bytes()[self._log_offset :].decode(errors="replace")
            return "listening on" in logged and listens(proc.pid, self.port)

        try:
            wait_until(ready, timeout=self.ready_timeout, what=f"referrers-registry on {self.host}")
        except Exception:
            self.stop()
            raise
        self._log_offset = len(self._read_log_bytes())
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def restart(self) -> None:
        """Stop and start on the same port; everything stored is lost."""
        self.stop()
        self.start()

    def garbage_collect(self, *args, **kwargs):
        raise NotImplementedError("referrers-registry has no garbage collection (reclaim mode none)")

    def set_readonly(self, readonly: bool) -> None:
        raise NotImplementedError("referrers-registry has no read-only mode")

    # the helper writes distribution's access-log lines: RegistryServer's reader parses them
    log_text = RegistryServer.log_text
    _read_log_bytes = RegistryServer._read_log_bytes
    access_log = RegistryServer.access_log
    _access_log = RegistryServer._access_log
    _log_mark = RegistryServer._log_mark
    clear_access_log = RegistryServer.clear_access_log

    def __enter__(self) -> ReferrersRegistryServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ReferrersRegistryServer(url={self.url!r}, spec_fixes={self.spec_fixes}, pid={self.pid})"
