"""Write regkeeper config files for tests, and a loopback control endpoint that switches a test
registry read-only / read-write (what systemctl or kubectl do in production) for reclaim."""

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


def registry_entry(reg, name: str = "local-registry", *, storage: bool = True, **extra) -> dict:
    e = {"name": name, "type": "local", "url": reg.url, "retries": 3, "timeout": "20s"}
    if storage and getattr(reg, "root", None) is not None:
        e["storage"] = {"type": "directory", "path": str(reg.root)}
    if getattr(reg, "ca_file", None):
        e["tls"] = {"caFile": reg.ca_file}
    e.update(extra)
    return e


def write_config(path: Path, registries: list[dict], **sections) -> Path:
    doc = {"mirrorRepositories": registries}
    for k, v in sections.items():
        if v is not None:
            doc[k] = v
    doc.setdefault("reports", {"directory": str(Path(path).parent / "reports")})
    doc.setdefault("cacheDir", str(Path(path).parent / "cache"))
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    return Path(path)


def held_mirror_config(path: Path, src, dst, *, dst_storage: bool = True) -> Path:
    """primary -> replica with ``deleteExtraneous`` (no cap) and the quarantine on (7d): what
    the tests of held extraneous deletes share."""
    return write_config(
        path,
        [registry_entry(src, "primary"), registry_entry(dst, "replica", storage=dst_storage)],
        replication=[
            {"from": "primary", "to": ["replica"], "deleteExtraneous": True, "maxDeleteFraction": 1.0}
        ],
        quarantine={"window": "7d"},
    )


class RegistryControl:
    """POST /readonly and /readwrite restart the registry in that mode; ``on_readonly`` runs
    while it is read-only (e.g. a push that must be refused)."""

    def __init__(self, reg, on_readonly=None):
        self.reg = reg
        self.on_readonly = on_readonly
        self.calls: list[str] = []
        ctl = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                mode = self.path.strip("/")
                ctl.calls.append(mode)
                ctl.reg.set_readonly(mode == "readonly")
                if mode == "readonly" and ctl.on_readonly:
                    ctl.on_readonly()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _cmd(self, mode: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            f"import urllib.request; urllib.request.urlopen(urllib.request.Request("
            f"'{self.url}/{mode}', method='POST'), timeout=60)",
        ]

    def reclaim_config(self) -> dict:
        return {
            "mode": "command",
            "readOnly": self._cmd("readonly"),
            "garbageCollect": ["/usr/bin/docker-registry", "garbage-collect", str(self.reg.config_path)],
            "readWrite": self._cmd("readwrite"),
            "timeout": "5m",
        }

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
