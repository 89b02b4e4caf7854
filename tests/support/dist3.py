"""A real CNCF distribution v3 registry (``registry`` v3.0.0, built by scripts/install-go-tools)
on 127.0.0.1, with the same interface as :class:`tests.support.registry.RegistryServer`.

The config RegistryServer writes for 2.8 is valid for v3.0.0 as it is (tried here: ``version:
0.1``, ``log.level``/``formatter: text``/``accesslog``, filesystem ``rootdirectory``,
``storage.delete.enabled``, ``storage.maintenance.{uploadpurging,readonly}``, ``http.addr``/
``secret``/``headers``; not tried with v3: tls, debug, auth), and the access log is the same
gorilla "combined" line, so ``access_log()`` works unchanged. A read-only v3 answers writes like
2.8: a bare 405 "Method not allowed" (text/plain, ``Allow: GET, HEAD``). What differs in v3:

- the binary: ``registry serve|garbage-collect`` (Debian's is ``docker-registry``);
- no referrers API: ``GET /v2/<name>/referrers/<digest>`` is 404 (a plain-text "404 page not
  found", not an OCI error body); v3 stores manifests with an OCI 1.1 ``subject`` and
  ``artifactType`` unchanged but sets no ``OCI-Subject`` header, so clients use the fallback
  ``sha256-<hex>`` tag scheme;
- ``DELETE /v2/<name>/manifests/<tag>`` deletes a tag (2.8 answers 400 DIGEST_INVALID);
- ``garbage-collect`` has ``--quiet`` besides 2.8's ``--dry-run``/``--delete-untagged``;
- this class serves filesystem storage only (v3's S3 driver was not tried: dist28-s3 covers S3);
- v3 exports OpenTelemetry traces when the OTEL_* variables ask for it: we set
  ``OTEL_TRACES_EXPORTER=none`` so it never tries.
"""

from __future__ import annotations

import os
from typing import Any

from tests.support.gotools import go_tool_path, missing_go_tool_message
from tests.support.registry import RegistryServer

__all__ = ["Distribution3Server", "dist3_binary"]


def dist3_binary() -> str | None:
    path = go_tool_path("registry")
    return str(path) if path else None


class Distribution3Server(RegistryServer):
    """distribution v3 ``registry serve`` with a generated config (filesystem storage only);
    the options and methods are RegistryServer's (url, root, access_log, garbage_collect,
    set_readonly, restart, stop by PID)."""

    binary = "registry"  # the path is resolved in require_binary()

    def __init__(self, tmpdir: str | os.PathLike, **kwargs: Any) -> None:
        if kwargs.get("storage", "filesystem") != "filesystem":
            raise ValueError("Distribution3Server serves filesystem storage only")
        super().__init__(tmpdir, **kwargs)

    def require_binary(self) -> None:
        path = dist3_binary()
        if path is None:
            raise RuntimeError(missing_go_tool_message("registry"))
        self.binary = path

    def env(self) -> dict[str, str]:
        env = super().env()
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        env["OTEL_TRACES_EXPORTER"] = "none"
        env["OTEL_SDK_DISABLED"] = "true"
        return env

    def __repr__(self) -> str:
        return f"Distribution3Server(url={self.url!r}, pid={self.pid})"
