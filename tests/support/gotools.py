"""Where the Go test parts live, and how to run one of them offline.

``scripts/install-go-tools`` builds them at pinned versions into
``${REGKEEPER_GOBIN:-${REGKEEPER_GO_CACHE:-~/.cache/regkeeper/go}/bin}``; this module looks in the
same place. Every run gets a temporary HOME (no user config, no credential helpers, no sigstore
TUF cache) and proxies that point at a closed loopback port, so anything a tool tries beyond
127.0.0.1 fails at once instead of reaching the network (Go never proxies loopback addresses).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "GO_TOOLS",
    "ToolError",
    "GoTool",
    "go_bin_dir",
    "go_tool_path",
    "missing_go_tool_message",
    "go_tools_required",
]

# name -> the pinned module version scripts/install-go-tools builds (kept in step with it)
GO_TOOLS = {
    "registry": "github.com/distribution/distribution/v3 v3.0.0",
    "oras": "oras.land/oras v1.3.6",
    "regctl": "github.com/regclient/regclient v0.11.1",
    "cosign": "github.com/sigstore/cosign/v2 v2.6.1",
    "referrers-registry": "tests/go/referrers-registry (google/go-containerregistry v0.22.1)",
}

# a port nothing listens on: HTTP(S)_PROXY points there so non-loopback traffic fails fast
_DEAD_PROXY = "http://127.0.0.1:9"


class ToolError(RuntimeError):
    def __init__(self, args: Sequence[str], res: subprocess.CompletedProcess) -> None:
        self.returncode = res.returncode
        self.stdout = res.stdout
        self.stderr = res.stderr
        super().__init__(
            f"{' '.join(args)} exited with {res.returncode}\n"
            f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
        )


def go_bin_dir() -> Path:
    if os.environ.get("REGKEEPER_GOBIN"):
        return Path(os.environ["REGKEEPER_GOBIN"])
    cache = os.environ.get("REGKEEPER_GO_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "regkeeper", "go"
    )
    return Path(cache) / "bin"


def go_tool_path(name: str) -> Path | None:
    """The built tool, or None when it is not there (run scripts/install-go-tools)."""
    path = go_bin_dir() / name
    return path if os.access(path, os.X_OK) else None


def missing_go_tool_message(name: str) -> str:
    return (
        f"{go_bin_dir() / name} is missing ({GO_TOOLS.get(name, name)}): "
        "run scripts/install-go-tools (needs Go >= 1.26.7)"
    )


def go_tools_required() -> bool:
    """CI sets REGKEEPER_REQUIRE_GO_TOOLS=1: a missing tool then fails instead of skipping."""
    return os.environ.get("REGKEEPER_REQUIRE_GO_TOOLS", "") not in ("", "0", "false")


class GoTool:
    """One Go CLI run with its own temporary HOME and loopback-only networking.

    ``workdir``: where HOME and the tool's config go (a fresh temp dir when None; removed by
    :meth:`close` only when it was created here)."""

    name = ""
    #: where HTTP(S)_PROXY point: a closed port, so a non-loopback request fails at once (a test
    #: may point it at a listener to see what a tool tries to reach)
    proxy_url = _DEAD_PROXY

    def __init__(self, workdir: str | os.PathLike | None = None, timeout: float = 120.0) -> None:
        path = go_tool_path(self.name)
        if path is None:
            raise FileNotFoundError(missing_go_tool_message(self.name))
        self.bin = str(path)
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.home = self.dir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            TMPDIR=str(self.dir),
            HTTP_PROXY=self.proxy_url,
            HTTPS_PROXY=self.proxy_url,
            http_proxy=self.proxy_url,
            https_proxy=self.proxy_url,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = [self.bin, *map(str, args)]
        res = subprocess.run(
            cmd,
            env=self.env(env),
            cwd=self.dir,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout or self.timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise ToolError([Path(self.bin).name, *map(str, args)], res)
        return res

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
