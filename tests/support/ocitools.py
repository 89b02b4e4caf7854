"""The real OCI 1.1 clients, driven offline against plain-http registries on 127.0.0.1:
``oras`` (push, attach, discover), ``cosign`` (key pair, sign, verify; no Rekor, no Fulcio, no
TUF) and ``regctl`` (artifact tree). Built by scripts/install-go-tools; see gotools.GoTool for
the temporary HOME and the loopback-only proxies every run gets.

Referrer modes (the names the matrix tests record, see :func:`tool_mode`):
``referrers-api``  the OCI 1.1 referrers API (GET /v2/<name>/referrers/<digest>; a writer just
                   PUTs the manifest with its ``subject`` and the registry indexes it);
``referrers-tag``  the OCI 1.1 fallback: an image index tagged ``sha256-<hex>`` of the subject;
``cosign-tag``     cosign's own scheme: a manifest tagged ``sha256-<hex>.sig``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.gotools import GoTool
from tests.support.registry import AccessEntry

__all__ = ["Oras", "Cosign", "Regctl", "TreeNode", "tool_mode", "digest_tag"]

ORAS_MODES = {"api": "v1.1-referrers-api", "tag": "v1.1-referrers-tag"}


def digest_tag(digest: str) -> str:
    """The fallback tag of a subject: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


def _json(stdout: str) -> Any:
    return json.loads(stdout)


class Oras(GoTool):
    name = "oras"

    def _files(self, files: Mapping[str, tuple[bytes, str]]) -> list[str]:
        """Write the files under a fresh directory of the workdir; return ``name:mediaType`` args
        relative to the workdir (oras refuses absolute paths without --disable-path-validation)."""
        sub = f"files-{secrets.token_hex(4)}"
        (self.dir / sub).mkdir()
        out = []
        for name, (data, media_type) in files.items():
            (self.dir / sub / name).write_bytes(data)
            out.append(f"{sub}/{name}:{media_type}")
        return out

    def push(
        self,
        ref: str,
        files: Mapping[str, tuple[bytes, str]],
        *,
        artifact_type: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict:
        """``oras push``: an OCI 1.1 artifact manifest; returns oras' JSON (``digest``...)."""
        args = ["push", "--plain-http", "--no-tty", "--format", "json", ref, *self._files(files)]
        if artifact_type:
            args += ["--artifact-type", artifact_type]
        for k, v in (annotations or {}).items():
            args += ["--annotation", f"{k}={v}"]
        return _json(self.run(args).stdout)

    def attach(
        self,
        subject: str,
        artifact_type: str,
        files: Mapping[str, tuple[bytes, str]],
        *,
        mode: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict:
        """``oras attach``: a referrer of ``subject`` (a tag or digest reference).
        ``mode``: None (oras decides: the OCI-Subject answer of the PUT), "api" or "tag"."""
        args = ["attach", "--plain-http", "--no-tty", "--format", "json", "--artifact-type", artifact_type]
        if mode:
            args += ["--distribution-spec", ORAS_MODES[mode]]
        for k, v in (annotations or {}).items():
            args += ["--annotation", f"{k}={v}"]
        args += [subject, *self._files(files)]
        return _json(self.run(args).stdout)

    def discover(self, ref: str, *, artifact_type: str | None = None, mode: str | None = None) -> dict:
        """``oras discover --format json``: ``{"digest":..., "referrers": [{digest, artifactType,
        referrers: [...]}, ...]}``."""
        args = ["discover", "--plain-http", "--no-tty", "--format", "json"]
        if artifact_type:
            args += ["--artifact-type", artifact_type]
        if mode:
            args += ["--distribution-spec", ORAS_MODES[mode]]
        return _json(self.run([*args, ref]).stdout)

    @staticmethod
    def referrers(discovered: dict) -> dict[str, list[tuple[str, str]]]:
        """subject digest -> [(referrer digest, artifactType)] over the whole discover tree."""
        out: dict[str, list[tuple[str, str]]] = {}

        def walk(node: dict) -> None:
            for child in node.get("referrers") or []:
                out.setdefault(node["digest"], []).append((child["digest"], child.get("artifactType", "")))
                walk(child)

        walk(discovered)
        return out


class Cosign(GoTool):
    """cosign v2 with a local key pair only: ``--tlog-upload=false`` on sign and
    ``--insecure-ignore-tlog --insecure-ignore-sct --trusted-root <empty>`` on verify, so neither
    Rekor nor Fulcio nor the sigstore TUF root is ever contacted. ``mode``: "legacy" (the ``sha256-<hex>.sig`` tag) or
    "oci-1-1" (COSIGN_EXPERIMENTAL=1 and --registry-referrers-mode=oci-1-1 on sign,
    --experimental-oci11 on verify: a referrer with ``subject``, found through the referrers API
    or the ``sha256-<hex>`` fallback tag)."""

    name = "cosign"
    # plain http on loopback: both flags are needed (the second covers the https -> http fallback)
    REGISTRY_FLAGS = ("--allow-http-registry", "--allow-insecure-registry")

    def __init__(self, workdir=None, timeout: float = 120.0, password: str | None = None) -> None:
        super().__init__(workdir, timeout)
        self._password = password if password is not None else secrets.token_hex(12)
        self.key: Path | None = None
        self.pub: Path | None = None

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = super().env(extra)
        env.update(COSIGN_PASSWORD=self._password, TUF_ROOT=str(self.home / ".sigstore" / "root"))
        return env

    def generate_key_pair(self) -> tuple[Path, Path]:
        """``cosign generate-key-pair`` in the workdir (the password comes from COSIGN_PASSWORD)."""
        self.run(["generate-key-pair"])
        self.key, self.pub = self.dir / "cosign.key", self.dir / "cosign.pub"
        return self.key, self.pub

    def _empty_trusted_root(self) -> Path:
        path = self.dir / "trusted_root.json"
        if not path.exists():
            path.write_text(
                json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"})
            )
        return path

    def _mode_env(self, mode: str) -> dict[str, str]:
        if mode not in ("legacy", "oci-1-1"):
            raise ValueError(f"mode must be 'legacy' or 'oci-1-1', not {mode!r}")
        return {"COSIGN_EXPERIMENTAL": "1"} if mode == "oci-1-1" else {}

    def sign(self, image: str, *, mode: str = "oci-1-1", annotations: Mapping[str, str] | None = None):
        """Sign ``image`` (a digest reference: cosign warns on tags) with the local key."""
        if self.key is None:
            self.generate_key_pair()
        args = ["sign", "--key", str(self.key), "--tlog-upload=false", "--yes", *self.REGISTRY_FLAGS]
        if mode == "oci-1-1":
            args.append("--registry-referrers-mode=oci-1-1")
        for k, v in (annotations or {}).items():
            args += ["-a", f"{k}={v}"]
        return self.run([*args, image], env=self._mode_env(mode))

    def verify(self, image: str, *, mode: str = "oci-1-1") -> list[dict]:
        """``cosign verify`` with the public key; returns the verified payloads (raises ToolError
        when no valid signature is found)."""
        if self.pub is None:
            raise RuntimeError("no key pair: call generate_key_pair() or sign() first")
        args = ["verify", "--key", str(self.pub), "--insecure-ignore-tlog", "--insecure-ignore-sct"]
        # an empty trusted root: without one, cosign verify fetches the sigstore TUF root from
        # tuf-repo-cdn.sigstore.dev first, even with a key (it carries on when that fails)
        args += ["--trusted-root", str(self._empty_trusted_root())]
        args += ["--output", "json", *self.REGISTRY_FLAGS]
        if mode == "oci-1-1":
            args.append("--experimental-oci11")
        res = self.run([*args, image], env=self._mode_env(mode))
        return _json(res.stdout)


@dataclass
class TreeNode:
    """One node of ``regctl artifact tree``: a manifest (``digest``) or, with --digest-tags, a
    digest tag (``tag``, e.g. ``sha256-<hex>.sig``), with its referrers and tags."""

    digest: str
    tag: str = ""
    artifact_type: str = ""
    referrers: list[TreeNode] = field(default_factory=list)
    tags: list[TreeNode] = field(default_factory=list)

    @classmethod
    def parse(cls, data: dict) -> TreeNode:
        ref = data.get("reference") or {}
        return cls(
            digest=ref.get("Digest", ""),
            tag=ref.get("Tag", ""),
            artifact_type=data.get("artifactType", ""),
            referrers=[cls.parse(c) for c in data.get("referrer") or []],
            tags=[cls.parse(c) for c in data.get("tags") or [] if isinstance(c, dict)],
        )

    def referrer_map(self) -> dict[str, list[tuple[str, str]]]:
        """subject digest -> [(referrer digest, artifactType)] for the manifest referrers (not the
        digest tags) of the whole tree."""
        out: dict[str, list[tuple[str, str]]] = {}
        for child in self.referrers:
            if child.digest:
                out.setdefault(self.digest, []).append((child.digest, child.artifact_type))
                for k, v in child.referrer_map().items():
                    out.setdefault(k, []).extend(v)
        return out

    def digest_tags(self) -> list[str]:
        """The digest tags listed under this node (``--digest-tags``)."""
        return [c.tag for c in [*self.referrers, *self.tags] if c.tag and not c.digest]


class Regctl(GoTool):
    """regctl with its own config file (REGCTL_CONFIG); :meth:`plain_http` marks a loopback
    registry as ``--tls disabled``."""

    name = "regctl"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = super().env(extra)
        env["REGCTL_CONFIG"] = str(self.dir / "regctl.json")
        return env

    def plain_http(self, host: str) -> None:
        self.run(["registry", "set", "--tls", "disabled", host])

    def tree(self, ref: str, *, digest_tags: bool = False, artifact_type: str | None = None) -> TreeNode:
        """``regctl artifact tree --format '{{json .}}'``; pass a digest reference so the root
        node has its digest (a tag reference leaves it empty)."""
        args = ["artifact", "tree", "--format", "{{json .}}"]
        if digest_tags:
            args.append("--digest-tags")
        if artifact_type:
            args += ["--filter-artifact-type", artifact_type]
        return TreeNode.parse(_json(self.run([*args, ref]).stdout))


def tool_mode(entries: Iterable[AccessEntry], subject: str) -> str:
    """How one tool run recorded or found the referrers of ``subject``, read from the registry's
    access log of that run: "cosign-tag", "referrers-tag", "referrers-api" or "none".

    A writer: PUT of ``sha256-<hex>.sig`` -> cosign-tag; PUT of ``sha256-<hex>`` -> referrers-tag;
    a manifest PUT without either -> referrers-api (it left the indexing to the registry).
    A reader: a 200 from GET referrers/<subject> -> referrers-api; else a 200 on the fallback tag
    -> referrers-tag; else a 200 on the .sig tag -> cosign-tag."""
    tag = digest_tag(subject)
    entries = list(entries)

    def hit(methods: Sequence[str], suffix: str, ok: Sequence[int]) -> bool:
        return any(e.method in methods and e.path.endswith(suffix) and e.status in ok for e in entries)

    puts = [e for e in entries if e.method == "PUT" and "/manifests/" in e.path and e.status == 201]
    if puts:
        if any(e.path.endswith(f"/manifests/{tag}.sig") for e in puts):
            return "cosign-tag"
        if any(e.path.endswith(f"/manifests/{tag}") for e in puts):
            return "referrers-tag"
        return "referrers-api"
    if hit(("GET",), f"/referrers/{subject}", (200,)):
        return "referrers-api"
    if hit(("GET", "HEAD"), f"/manifests/{tag}", (200,)):
        return "referrers-tag"
    if hit(("GET", "HEAD"), f"/manifests/{tag}.sig", (200,)):
        return "cosign-tag"
    return "none"
