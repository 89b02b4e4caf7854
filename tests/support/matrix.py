"""The registry matrix: the same tests against every real registry kind the product meets.

``dist28-fs``      Debian's distribution 2.8 (docker-registry), filesystem storage
``dist28-s3``      distribution 2.8 on moto's S3 API
``dist3-fs``       distribution v3.0.0 (built by scripts/install-go-tools), filesystem storage
``referrers-api``  tests/go/referrers-registry: go-containerregistry's registry with the OCI 1.1
                   referrers API (memory only, no garbage collection)

Each is a :class:`MatrixRegistry`: ``url``, ``host``, ``name``, ``capabilities`` and the server's
own methods (access_log, clear_access_log, garbage_collect...), with ``start``/``stop``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MATRIX", "Capabilities", "MatrixRegistry", "CAPABILITIES", "GO_BINARY"]

MATRIX = ("dist28-fs", "dist28-s3", "dist3-fs", "referrers-api")


@dataclass(frozen=True)
class Capabilities:
    """What a registry of the matrix does (asserted by tests/integration/test_matrix_tools.py).

    referrers_api:   serves GET /v2/<name>/referrers/<digest> (else clients use sha256-<hex> tags)
    garbage_collect: an offline ``garbage-collect`` reclaims unreferenced blobs (reclaim mode)
    delete:          DELETE of manifests by digest is enabled
    delete_tag:      DELETE /v2/<name>/manifests/<tag> removes just the tag
    catalog:         GET /v2/_catalog lists repositories
    persistent:      the content survives a restart (and set_readonly() works)
    storage_kind:    "filesystem", "s3" or "memory"
    """

    referrers_api: bool
    garbage_collect: bool
    delete: bool
    delete_tag: bool
    catalog: bool
    persistent: bool
    storage_kind: str


CAPABILITIES = {
    "dist28-fs": Capabilities(False, True, True, False, True, True, "filesystem"),
    "dist28-s3": Capabilities(False, True, True, False, True, True, "s3"),
    "dist3-fs": Capabilities(False, True, True, True, True, True, "filesystem"),
    "referrers-api": Capabilities(True, False, True, True, True, False, "memory"),
}

# which Go-built binary a param needs (the dist28 ones use the Debian package)
GO_BINARY = {"dist3-fs": "registry", "referrers-api": "referrers-registry"}


class MatrixRegistry:
    """A started registry of the matrix. ``server`` is the RegistryServer /
    Distribution3Server / ReferrersRegistryServer; unknown attributes are looked up on it."""

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name = name
        self.capabilities = CAPABILITIES[name]
        self._make = make
        self.server: Any = None
        self.start()

    def start(self) -> MatrixRegistry:
        """Start (again): the same storage for persistent kinds, an empty registry for memory."""
        if self.server is None:
            self.server = self._make()
        elif self.server.pid is None:
            self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def storage_path(self) -> Path | None:
        """The filesystem root to inspect (filesystem storage only)."""
        return self.server.root

    def ref(self, repo: str, tag_or_digest: str) -> str:
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or self.__dict__.get("server") is None:
            raise AttributeError(attr)
        return getattr(self.server, attr)

    def __repr__(self) -> str:
        return f"MatrixRegistry({self.name!r}, url={self.server.url if self.server else None!r})"
