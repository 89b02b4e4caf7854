"""A real CNCF distribution 2.8 registry (Debian ``docker-registry``) on 127.0.0.1.

The server always runs with a config generated here (never the packaged
/etc/docker/registry/config.yml and never the packaged service).
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from tests.support.procs import ManagedProcess, free_port, retry_taken_port, wait_http_ready

if TYPE_CHECKING:  # pragma: no cover
    from tests.support.tokenserver import TokenAuthConfig

__all__ = ["REGISTRY_BIN", "AccessEntry", "RegistryServer", "require_registry_binary"]

REGISTRY_BIN = "/usr/bin/docker-registry"
LOG_MARK = "rk-log-mark"  # the query of access_log()'s marker request (left out of its entries)

# gorilla/handlers combined log format, as printed by distribution for every request:
# 127.0.0.1 - - [25/Nov/2026:20:25:34 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
_ACCESS_RE = re.compile(
    r"^(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) (?P<size>\S+)'
    r'(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?'
)


class AccessEntry(NamedTuple):
    method: str
    path: str  # request path without the query string
    status: int
    query: str = ""  # raw query string ("" when none)
    user_agent: str = ""


def require_registry_binary() -> None:
    if not os.access(REGISTRY_BIN, os.X_OK):
        raise RuntimeError(
            f"{REGISTRY_BIN} is missing: install the Debian package 'docker-registry' "
            "(CNCF distribution 2.8) to run the real-registry tests"
        )


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class RegistryServer:
    """distribution 2.8 ``docker-registry serve`` with a generated config on a free loopback port.

    storage: "filesystem" (root under tmpdir, see ``.root``) or "s3" with
    ``s3=dict(endpoint=, bucket=, access_key=, secret_key=, region=)``.
    Auth: ``htpasswd=(user, password)`` or ``token=TokenAuthConfig`` (not both: distribution
    allows one access controller). ``tls=True`` serves https with a self-signed cert for
    127.0.0.1/localhost (``.ca_file``). ``extra_config`` is deep-merged into the YAML.

    Subclass hooks: ``binary`` (the executable for ``serve`` and ``garbage-collect``) and
    ``require_binary()``; tests/support/dist3.py serves distribution v3 through them.
    """

    binary: str = REGISTRY_BIN

    def require_binary(self) -> None:
        require_registry_binary()

    def __init__(
        self,
        tmpdir: str | os.PathLike,
        *,
        storage: str = "filesystem",
        s3: dict | None = None,
        htpasswd: tuple[str, str] | None = None,
        tls: bool = False,
        token: TokenAuthConfig | None = None,
        readonly: bool = False,
        delete_enabled: bool = True,
        debug: bool = False,
        extra_config: dict | None = None,
        start: bool = True,
        ready_timeout: float = 60.0,
    ) -> None:
        self.require_binary()
        if storage not in ("filesystem", "s3"):
            raise ValueError(f"storage must be 'filesystem' or 's3', not {storage!r}")
        if storage == "s3" and not s3:
            raise ValueError("storage='s3' needs s3=dict(endpoint, bucket, access_key, secret_key, region)")
        if htpasswd and token:
            raise ValueError("distribution accepts one auth method: pass htpasswd or token, not both")
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage
        self.s3 = dict(s3) if s3 else None
        self.htpasswd = htpasswd
        self.tls = tls
        self.token = token
        self.readonly = readonly
        self.delete_enabled = delete_enabled
        self.debug = debug
        self.extra_config = extra_config or {}
        self.ready_timeout = ready_timeout

        self._pick_ports()
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.root: Path | None = None
        if storage == "filesystem":
            self.root = self.dir / "storage"
            self.root.mkdir(parents=True, exist_ok=True)
        self.ca_file: str | None = None
        self._cert_file: Path | None = None
        self._key_file: Path | None = None
        self._htpasswd_file: Path | None = None
        self._secret = secrets.token_hex(16)  # kept across restarts so upload state stays valid
        self._log_offset = 0
        self._proc: ManagedProcess | None = None

        if tls:
            self._make_cert()
        if htpasswd:
            self._make_htpasswd(*htpasswd)
        if start:  # nobody holds the URL yet: a port taken meanwhile is traded for a fresh one
            retry_taken_port(self.start, self._pick_ports)

    # -- config ----------------------------------------------------------------------
    def _make_cert(self) -> None:
        cert = self.dir / "tls.crt"
        key = self.dir / "tls.key"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "3",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._cert_file, self._key_file = cert, key
        self.ca_file = str(cert)

    def _make_htpasswd(self, user: str, password: str) -> None:
        htpasswd_bin = shutil.which("htpasswd")
        if not htpasswd_bin:
            raise RuntimeError("htpasswd is missing: install the Debian package 'apache2-utils'")
        res = subprocess.run(
            [htpasswd_bin, "-Bbn", user, password], capture_output=True, text=True, timeout=60
        )
        if res.returncode != 0:
            raise RuntimeError(f"htpasswd -Bbn failed with exit code {res.returncode}: {res.stderr.strip()}")
        path = self.dir / "htpasswd"
        path.write_text(res.stdout.strip() + "\n")
        self._htpasswd_file = path

    def config(self) -> dict[str, Any]:
        storage: dict[str, Any]
        if self.storage == "filesystem":
            storage = {"filesystem": {"rootdirectory": str(self.root)}}
        else:
            s3 = self.s3 or {}
            endpoint = s3["endpoint"]
            s3_params = {
                "accesskey": s3["access_key"],
                "secretkey": s3["secret_key"],
                "region": s3.get("region", "us-east-1"),
                "regionendpoint": endpoint,  # distribution 2.8 forces path-style when this is set
                "bucket": s3["bucket"],
                "secure": endpoint.startswith("https://"),
                "v4auth": True,
            }
            if s3.get("rootdirectory"):
                s3_params["rootdirectory"] = s3["rootdirectory"]
            storage = {"s3": s3_params}
        storage["delete"] = {"enabled": bool(self.delete_enabled)}
        storage["maintenance"] = {
            "uploadpurging": {"enabled": False},
            "readonly": {"enabled": bool(self.readonly)},
        }
        http: dict[str, Any] = {
            "addr": self.host,
            "secret": self._secret,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http["tls"] = {"certificate": str(self._cert_file), "key": str(self._key_file)}
        if self.debug:
            http["debug"] = {
                "addr": f"127.0.0.1:{self.debug_port}",
                "prometheus": {"enabled": True, "path": "/metrics"},
            }
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
            "storage": storage,
            "http": http,
        }
        if self._htpasswd_file is not None:
            cfg["auth"] = {"htpasswd": {"realm": "regkeeper-test", "path": str(self._htpasswd_file)}}
        elif self.token is not None:
            cfg["auth"] = {
                "token": {
                    "realm": self.token.realm,
                    "service": self.token.service,
                    "issuer": self.token.issuer,
                    "rootcertbundle": str(self.token.rootcertbundle),
                }
            }
        if self.extra_config:
            cfg = _deep_merge(cfg, self.extra_config)
        return cfg

    def write_config(self) -> Path:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return self.config_path

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # REGISTRY_* would silently override our config; AWS_CA_BUNDLE breaks the s3 driver
            if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"
        }
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    # -- lifecycle -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.debug_port = free_port() if self.debug else None
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> RegistryServer:
        """Start on ``self.port`` and wait until it answers; a port taken meanwhile raises
        PortInUse naming it (the constructor's start moves to a fresh port instead; a later
        start keeps the URL callers hold)."""
        self.write_config()
        self._proc = ManagedProcess(
            [self.binary, "serve", str(self.config_path)], env=self.env(), log_path=self.log_path
        ).start()
        self._wait_ready()
        return self

    def _verify(self):
        return self.ca_file if self.tls else False

    def _wait_ready(self) -> None:
        wait_http_ready(
            self._proc,
            "registry",
            f"{self.url}/v2/",
            lambda st: st in (200, 401),
            timeout=self.ready_timeout,
            verify=self._verify(),
            stop=self.stop,
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_readonly(self, readonly: bool) -> None:
        """Rewrite the config with storage.maintenance.readonly and restart on the same port and storage."""
        self.readonly = bool(readonly)
        self.restart()

    def garbage_collect(self, dry_run: bool = False, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``docker-registry garbage-collect [--dry-run] <config>`` (never --delete-untagged)."""
        args = [self.binary, "garbage-collect"]
        if dry_run:
            args.append("--dry-run")
        args.append(str(self.config_path))
        return subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=timeout)

    # -- logs ------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _read_log_bytes(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def access_log(
        self, settle: float = 0.15, max_wait: float = 3.0, min_entries: int = 0
    ) -> list[AccessEntry]:
        """Access-log entries since the last :meth:`clear_access_log`.

        distribution writes a request's line just after the response is sent: a quiet log is
        no proof the last line is there (a loaded machine delays the writer). So this sends a
        marker request of its own (``GET /v2/?rk-log-mark=<id>``, left out of the entries) and
        waits for its line: the lines of requests answered before it are written by then. Then
        it waits until the log has been quiet for ``settle`` seconds (at most ``max_wait``), and,
        with ``min_entries``, until at least that many entries are there (at most 60 s more).
        """
        entries = self._access_log(settle, max_wait)
        deadline = time.monotonic() + 60.0
        while len(entries) < min_entries and time.monotonic() < deadline:
            time.sleep(0.05)
            entries = self._access_log(0.05, 1.0)
        return entries

    def _log_mark(self) -> None:
        """Send a marker request and wait (up to 60 s) for its access-log line; nothing when
        the server does not answer (stopped)."""
        import requests

        mark = f"{LOG_MARK}={secrets.token_hex(8)}"
        verify = self._verify() if hasattr(self, "_verify") else False
        try:
            requests.get(f"{self.url}/v2/?{mark}", timeout=10, verify=verify)
        except requests.RequestException:
            return
        want = mark.encode()
        deadline = time.monotonic() + 60.0
        while want not in self._read_log_bytes()[self._log_offset :] and time.monotonic() < deadline:
            time.sleep(0.01)

    def _access_log(self, settle: float, max_wait: float) -> list[AccessEntry]:
        self._log_mark()
        deadline = time.monotonic() + max_wait
        size = -1
        quiet_since = time.monotonic()
        while True:
            cur = self.log_path.stat().st_size if self.log_path.exists() else 0
            now = time.monotonic()
            if cur != size:
                size, quiet_since = cur, now
            elif now - quiet_since >= settle or now >= deadline:
                break
            time.sleep(0.02)
        data = self._read_log_bytes()[self._log_offset :]
        out: list[AccessEntry] = []
        for line in data.decode(errors="replace").splitlines():
            m = _ACCESS_RE.match(line)
            if not m:
                continue
            uri = m.group("uri")
            path, _, query = uri.partition("?")
            if query.startswith(LOG_MARK + "="):
                continue  # our own marker request
            out.append(
                AccessEntry(m.group("method"), path, int(m.group("status")), query, m.group("agent") or "")
            )
        return out

    def clear_access_log(self) -> None:
        """Forget the entries so far: later :meth:`access_log` calls only see newer requests."""
        self.access_log(settle=0.05, max_wait=1.0)  # let in-flight lines land first
        self._log_offset = len(self._read_log_bytes())

    # -- convenience -----------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Filesystem path of a blob's data file (filesystem storage only)."""
        if self.root is None:
            raise RuntimeError("blob_path needs filesystem storage")
        algo, hexd = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def __enter__(self) -> RegistryServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RegistryServer(url={self.url!r}, storage={self.storage!r}, pid={self.pid})"
