"""Push test images to a registry with raw ``requests`` (independent of regkeeper's own client).

Every function takes ``auth`` (a requests auth object or a (user, password) tuple), ``verify``
and ``timeout`` and passes them to every HTTP call. For token-auth registries pass
``auth=BearerAuth(user, password, verify=...)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import random
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
from requests.auth import AuthBase, HTTPBasicAuth

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_LIST",
    "OCI_MANIFEST",
    "OCI_INDEX",
    "MANIFEST_ACCEPT",
    "ALL_MANIFEST_TYPES",
    "DOCKER_CONFIG",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "EMPTY_JSON_DIGEST",
    "PushedImage",
    "PushedIndex",
    "BearerAuth",
    "PushError",
    "sha256_digest",
    "descriptor",
    "push_blob",
    "blob_exists",
    "push_image",
    "push_index",
    "push_signature",
    "push_referrer",
    "tag_existing",
    "push_many",
    "put_manifest",
    "get_manifest",
    "head_manifest",
    "delete_manifest",
    "list_tags",
    "catalog",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ALL_MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
MANIFEST_ACCEPT = ", ".join(ALL_MANIFEST_TYPES)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:" + hashlib.sha256(EMPTY_JSON).hexdigest()

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SPDX_JSON = "text/spdx+json"

DEFAULT_TIMEOUT = 30.0


class PushError(RuntimeError):
    pass


@dataclass
class PushedImage:
    digest: str
    manifest_bytes: bytes
    media_type: str
    config_digest: str
    layer_digests: list[str]
    size_total: int  # manifest + config + layers, bytes
    repo: str = ""
    tag: str | None = None
    platform: dict | None = None
    created: dt.datetime | None = None

    @property
    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest_bytes)}


@dataclass
class PushedIndex:
    digest: str
    children: list[PushedImage]
    manifest_bytes: bytes = b""
    media_type: str = OCI_INDEX
    repo: str = ""
    tag: str | None = None

    @property
    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest_bytes)}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(obj: Any) -> dict:
    """Descriptor dict for a PushedImage/PushedIndex or a descriptor dict."""
    if isinstance(obj, (PushedImage, PushedIndex)):
        return obj.descriptor
    if isinstance(obj, dict) and {"mediaType", "digest", "size"} <= obj.keys():
        return {"mediaType": obj["mediaType"], "digest": obj["digest"], "size": obj["size"]}
    raise TypeError(f"cannot make a descriptor from {type(obj).__name__}")


def _rfc3339(created: dt.datetime | None) -> str:
    created = created or dt.datetime.now(dt.UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, indent=3).encode()


# -- auth ------------------------------------------------------------------------------
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
_REPO_RE = re.compile(r"/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")


class BearerAuth(AuthBase):
    """Docker registry auth for requests, like docker clients do it.

    Sends cached bearer tokens; answers a 401 ``Bearer`` challenge by fetching a token from the
    realm (with basic credentials when a username is given) and retrying once. With
    ``basic_first=True`` (what a ``(user, password)`` tuple becomes) it also sends Basic
    credentials while it holds no token, so the same object works for htpasswd registries.
    Tokens are cached per repository (or per catalog/base endpoint); ``token_fetches`` counts fetches."""

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = 10.0,
        basic_first: bool = False,
    ) -> None:
        self.username, self.password = username, password
        self.verify, self.timeout = verify, timeout
        self.basic_first = basic_first and username is not None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.token_fetches = 0

    def __repr__(self) -> str:  # never show the password or tokens
        return f"BearerAuth(username={self.username!r})"

    @staticmethod
    def _key(url: str) -> str:
        m = _REPO_RE.search(url)
        if m:
            return "repository:" + m.group(1)
        return "catalog" if "/_catalog" in url else "base"

    def __call__(self, r):
        with self._lock:
            token = self._tokens.get(self._key(r.url))
        if token:
            r.headers["Authorization"] = f"Bearer {token}"
        elif self.basic_first:
            r = HTTPBasicAuth(self.username, self.password or "")(r)
        r.register_hook("response", self._handle_401)
        return r

    def _handle_401(self, resp, **kwargs):
        if resp.status_code != 401 or getattr(resp.request, "_bearer_retried", False):
            return resp
        header = resp.headers.get("WWW-Authenticate", "")
        if not header.lower().startswith("bearer "):
            return resp
        params = dict(_CHALLENGE_RE.findall(header))
        query: dict[str, Any] = {}
        if params.get("service"):
            query["service"] = params["service"]
        if params.get("scope"):
            query["scope"] = params["scope"].split(" ")
        basic = HTTPBasicAuth(self.username, self.password or "") if self.username is not None else None
        tr = requests.get(params["realm"], params=query, auth=basic, timeout=self.timeout, verify=self.verify)
        self.token_fetches += 1
        if tr.status_code != 200:
            return resp
        body = tr.json()
        token = body.get("token") or body.get("access_token")
        with self._lock:
            self._tokens[self._key(resp.request.url)] = token
        _ = resp.content  # consume so the connection can be reused
        resp.close()
        prep = resp.request.copy()
        prep.headers["Authorization"] = f"Bearer {token}"
        prep._bearer_retried = True
        _r = resp.connection.send(prep, **kwargs)
        _r.history.append(resp)
        _r.request = prep
        return _r


def _auth(auth, verify: bool | str = True, timeout: float = DEFAULT_TIMEOUT, token_server=None):
    """None | AuthBase | (user, password). A tuple becomes a BearerAuth that also sends Basic
    first, unless ``token_server`` is given (then the credentials only go to the token realm)."""
    if auth is None or isinstance(auth, AuthBase):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return BearerAuth(auth[0], auth[1], verify=verify, timeout=timeout, basic_first=token_server is None)
    raise TypeError("auth must be a requests auth object or a (user, password) tuple")


class _Client:
    def __init__(
        self,
        base: str,
        auth=None,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        token_server=None,
    ) -> None:
        self.base = base.rstrip("/")
        self.auth = _auth(auth, verify, timeout, token_server)
        self.verify = verify
        self.timeout = timeout
        self.session = session or requests.Session()

    def req(self, method: str, url: str, **kw) -> requests.Response:
        if not url.startswith("http"):
            url = self.base + url
        return self.session.request(
            method, url, auth=self.auth, verify=self.verify, timeout=self.timeout, **kw
        )

    def fail(self, what: str, r: requests.Response) -> PushError:
        return PushError(f"{what}: {r.request.method} {r.url} -> HTTP {r.status_code}: {r.text[:300]}")

    # blobs
    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.req("HEAD", f"/v2/{repo}/blobs/{digest}")
        return r.status_code == 200

    def push_blob(
        self, repo: str, data: bytes, *, mount_from: str | None = None, skip_existing: bool = False
    ) -> tuple[str, int]:
        digest = sha256_digest(data)
        if skip_existing and self.blob_exists(repo, digest):
            return digest, len(data)
        if mount_from:
            r = self.req("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": mount_from})
            if r.status_code == 201:
                return digest, len(data)
            if r.status_code != 202:
                raise self.fail(f"mount blob {digest} from {mount_from} into {repo}", r)
        else:
            r = self.req("POST", f"/v2/{repo}/blobs/uploads/")
            if r.status_code != 202:
                raise self.fail(f"start blob upload in {repo}", r)
        location = urljoin(self.base + "/", r.headers["Location"])
        sep = "&" if "?" in location else "?"
        r = self.req(
            "PUT",
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code != 201:
            raise self.fail(f"upload blob {digest} to {repo}", r)
        return digest, len(data)

    # manifests
    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = self.req("PUT", f"/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
        if r.status_code != 201:
            raise self.fail(f"put manifest {repo}:{ref}", r)
        digest = sha256_digest(body)
        got = r.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise PushError(f"registry digest {got} != computed {digest} for {repo}:{ref}")
        return digest

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        r = self.req("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code != 200:
            raise self.fail(f"get manifest {repo}:{ref}", r)
        return r.content, r.headers.get("Content-Type", ""), r.headers.get("Docker-Content-Digest", "")


def _rng(seed):
    return random.Random(seed) if seed is not None else None


def _randbytes(rng: random.Random | None, n: int) -> bytes:
    return rng.randbytes(n) if rng is not None else os.urandom(n)


def _build_image(
    c: _Client,
    repo: str,
    *,
    layers: list[bytes] | None,
    created: dt.datetime | None,
    media: str,
    arch: str,
    os_: str,
    extra_annotations: dict | None,
    seed,
    mount_from: str | None = None,
    variant: str | None = None,
) -> PushedImage:
    if media not in ("docker", "oci"):
        raise ValueError("media must be 'docker' or 'oci'")
    rng = _rng(seed)
    if layers is None:
        layers = [_randbytes(rng, 2048), _randbytes(rng, 1024)]
    layer_descs = []
    for data in layers:
        digest, size = c.push_blob(repo, data, mount_from=mount_from, skip_existing=True)
        layer_descs.append(
            {"mediaType": DOCKER_LAYER if media == "docker" else OCI_LAYER, "size": size, "digest": digest}
        )
    created_s = _rfc3339(created)
    config = {
        "architecture": arch,
        "os": os_,
        "created": created_s,
        "config": {"Labels": {"regkeeper.test": "1"}},
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
        "history": [{"created": created_s, "created_by": "regkeeper tests"}],
    }
    if variant:
        config["variant"] = variant
    config_bytes = _canon(config)
    config_digest, config_size = c.push_blob(repo, config_bytes, skip_existing=True)
    if media == "docker":
        mt = DOCKER_MANIFEST
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": DOCKER_CONFIG, "size": config_size, "digest": config_digest},
            "layers": layer_descs,
        }
    else:
        mt = OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": OCI_CONFIG, "size": config_size, "digest": config_digest},
            "layers": layer_descs,
            "annotations": {"org.opencontainers.image.created": created_s, **(extra_annotations or {})},
        }
    body = _canon(manifest)
    platform = {"architecture": arch, "os": os_}
    if variant:
        platform["variant"] = variant
    return PushedImage(
        digest=sha256_digest(body),
        manifest_bytes=body,
        media_type=mt,
        config_digest=config_digest,
        layer_digests=[d["digest"] for d in layer_descs],
        size_total=len(body) + config_size + sum(d["size"] for d in layer_descs),
        repo=repo,
        platform=platform,
        created=dt.datetime.fromisoformat(created_s.replace("Z", "+00:00")),
    )


# -- public helpers ----------------------------------------------------------------------
def push_blob(
    base: str,
    repo: str,
    data: bytes,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    mount_from: str | None = None,
    session: requests.Session | None = None,
    token_server=None,
) -> tuple[str, int]:
    """Monolithic upload (POST then PUT ?digest=), or a cross-repo mount when ``mount_from`` is set."""
    return _Client(base, auth, verify, timeout, session, token_server).push_blob(
        repo, data, mount_from=mount_from
    )


def blob_exists(
    base: str,
    repo: str,
    digest: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> bool:
    return _Client(base, auth, verify, timeout, token_server=token_server).blob_exists(repo, digest)


def put_manifest(
    base: str,
    repo: str,
    ref: str,
    body: bytes,
    media_type: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> str:
    return _Client(base, auth, verify, timeout, token_server=token_server).put_manifest(
        repo, ref, body, media_type
    )


def push_image(
    base: str,
    repo: str,
    tag: str | None,
    *,
    layers: list[bytes] | None = None,
    created: dt.datetime | None = None,
    media: str = "docker",
    arch: str = "amd64",
    os: str = "linux",
    extra_annotations: dict | None = None,
    seed=None,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    mount_from: str | None = None,
    session: requests.Session | None = None,
    token_server=None,
) -> PushedImage:
    """Push a small single-platform image (docker schema2 or OCI). ``tag=None`` pushes by digest only.

    Layers default to two small random blobs (deterministic from ``seed``); the config JSON carries
    ``created`` (default now, UTC). ``token_server``: pass the TokenServer of a token-auth registry
    with ``auth=(user, password)`` so the credentials only go to the token realm."""
    c = _Client(base, auth, verify, timeout, session, token_server)
    img = _build_image(
        c,
        repo,
        layers=layers,
        created=created,
        media=media,
        arch=arch,
        os_=os,
        extra_annotations=extra_annotations,
        seed=seed,
        mount_from=mount_from,
    )
    c.put_manifest(repo, tag or img.digest, img.manifest_bytes, img.media_type)
    img.tag = tag
    return img


def push_index(
    base: str,
    repo: str,
    tag: str | None,
    platforms: Iterable[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    *,
    media: str = "oci",
    created: dt.datetime | None = None,
    seed=None,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> PushedIndex:
    """Push one child manifest per (os, arch) by digest (untagged), then the index/manifest list by tag."""
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    children: list[PushedImage] = []
    for i, (os_, arch) in enumerate(platforms):
        child_seed = None if seed is None else f"{seed}/{i}"
        img = _build_image(
            c,
            repo,
            layers=None,
            created=created,
            media="oci" if media == "oci" else "docker",
            arch=arch,
            os_=os_,
            extra_annotations=None,
            seed=child_seed,
        )
        c.put_manifest(repo, img.digest, img.manifest_bytes, img.media_type)
        children.append(img)
    mt = OCI_INDEX if media == "oci" else DOCKER_LIST
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": [{**ch.descriptor, "platform": ch.platform} for ch in children],
    }
    if media == "oci":
        index["annotations"] = {"org.opencontainers.image.created": _rfc3339(created)}
    body = _canon(index)
    digest = c.put_manifest(repo, tag or sha256_digest(body), body, mt)
    return PushedIndex(
        digest=digest, children=children, manifest_bytes=body, media_type=mt, repo=repo, tag=tag
    )


def push_signature(
    base: str,
    repo: str,
    subject_digest: str,
    kind: str = "sig",
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
    created: dt.datetime | None = None,
) -> PushedImage:
    """Push a cosign-style artifact tagged ``sha256-<hex>.<kind>`` (kind: sig | att | sbom)."""
    if kind not in ("sig", "att", "sbom"):
        raise ValueError("kind must be 'sig', 'att' or 'sbom'")
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    algo, hexd = subject_digest.split(":", 1)
    tag = f"{algo}-{hexd}.{kind}"
    if kind == "sig":
        payload = _canon(
            {
                "critical": {
                    "identity": {"docker-reference": repo},
                    "image": {"docker-manifest-digest": subject_digest},
                    "type": "cosign container image signature",
                },
                "optional": {"nonce": os.urandom(8).hex()},
            }
        )
        layer_mt = COSIGN_SIMPLESIGNING
        layer_ann = {"dev.cosignproject.cosign/signature": base64.b64encode(os.urandom(64)).decode()}
    elif kind == "att":
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"digest": {algo: hexd}}],
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "predicate": {"n": os.urandom(8).hex()},
        }
        payload = _canon(
            {
                "payloadType": "application/vnd.in-toto+json",
                "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
                "signatures": [],
            }
        )
        layer_mt = DSSE_ENVELOPE
        layer_ann = {"predicateType": statement["predicateType"]}
    else:
        payload = _canon({"spdxVersion": "SPDX-2.3", "name": repo, "documentNamespace": os.urandom(8).hex()})
        layer_mt = SPDX_JSON
        layer_ann = {}
    layer_digest, layer_size = c.push_blob(repo, payload, skip_existing=True)
    created_s = _rfc3339(created)
    config_bytes = _canon(
        {
            "architecture": "",
            "os": "",
            "created": created_s,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    config_digest, config_size = c.push_blob(repo, config_bytes, skip_existing=True)
    layer_desc: dict[str, Any] = {"mediaType": layer_mt, "size": layer_size, "digest": layer_digest}
    if layer_ann:
        layer_desc["annotations"] = layer_ann
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config_size, "digest": config_digest},
        "layers": [layer_desc],
    }
    body = _canon(manifest)
    digest = c.put_manifest(repo, tag, body, OCI_MANIFEST)
    return PushedImage(
        digest=digest,
        manifest_bytes=body,
        media_type=OCI_MANIFEST,
        config_digest=config_digest,
        layer_digests=[layer_digest],
        size_total=len(body) + config_size + layer_size,
        repo=repo,
        tag=tag,
    )


def push_referrer(
    base: str,
    repo: str,
    subject_desc: Any,
    *,
    artifact_type: str = "application/vnd.example.sbom.v1+json",
    tag: str | None = None,
    fallback_tag: bool = True,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
    created: dt.datetime | None = None,
) -> PushedImage:
    """Push an OCI 1.1 artifact manifest whose ``subject`` is ``subject_desc`` (by digest unless ``tag``).

    distribution 2.8 has no referrers API, so like oras/cosign do against such registries, with
    ``fallback_tag=True`` the referrers index at tag ``sha256-<hex>`` (the OCI referrers tag schema)
    is created or extended to list this artifact."""
    subject = descriptor(subject_desc)
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    c.push_blob(repo, EMPTY_JSON, skip_existing=True)
    blob = _canon({"artifact": artifact_type, "nonce": os.urandom(8).hex()})
    blob_digest, blob_size = c.push_blob(repo, blob, skip_existing=True)
    created_s = _rfc3339(created)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "size": len(EMPTY_JSON), "digest": EMPTY_JSON_DIGEST},
        "layers": [{"mediaType": artifact_type, "size": blob_size, "digest": blob_digest}],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": created_s},
    }
    body = _canon(manifest)
    digest = c.put_manifest(repo, tag or sha256_digest(body), body, OCI_MANIFEST)
    img = PushedImage(
        digest=digest,
        manifest_bytes=body,
        media_type=OCI_MANIFEST,
        config_digest=EMPTY_JSON_DIGEST,
        layer_digests=[blob_digest],
        size_total=len(body) + len(EMPTY_JSON) + blob_size,
        repo=repo,
        tag=tag,
    )
    if fallback_tag:
        ref_tag = subject["digest"].replace(":", "-")
        r = c.req("GET", f"/v2/{repo}/manifests/{ref_tag}", headers={"Accept": OCI_INDEX})
        if r.status_code == 200:
            index = r.json()
        elif r.status_code == 404:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        else:
            raise c.fail(f"read referrers tag {repo}:{ref_tag}", r)
        index["manifests"].append(
            {**img.descriptor, "artifactType": artifact_type, "annotations": manifest["annotations"]}
        )
        c.put_manifest(repo, ref_tag, _canon(index), OCI_INDEX)
    return img


def tag_existing(
    base: str,
    repo: str,
    tag: str,
    digest: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> str:
    """GET the manifest bytes by digest (full Accept) and PUT them unchanged under ``tag``."""
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    body, ctype, _ = c.get_manifest(repo, digest)
    got = c.put_manifest(repo, tag, body, ctype)
    if got != digest:
        raise PushError(f"retagging {repo}@{digest} as {tag} produced {got}")
    return got


def get_manifest(
    base: str,
    repo: str,
    ref: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> tuple[bytes, str, str]:
    """(body bytes, Content-Type, Docker-Content-Digest header) of a manifest."""
    return _Client(base, auth, verify, timeout, token_server=token_server).get_manifest(repo, ref)


def head_manifest(
    base: str,
    repo: str,
    ref: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> str | None:
    """The manifest digest, or None if the registry answers 404."""
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    r = c.req("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise c.fail(f"head manifest {repo}:{ref}", r)
    return r.headers.get("Docker-Content-Digest")


def delete_manifest(
    base: str,
    repo: str,
    digest: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> int:
    """DELETE by digest (the only way distribution allows); returns the HTTP status."""
    if not digest.startswith("sha256:"):
        raise ValueError("delete manifests by digest only")
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    return c.req("DELETE", f"/v2/{repo}/manifests/{digest}").status_code


def list_tags(
    base: str,
    repo: str,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> list[str]:
    """All tags of a repository (follows Link pagination); [] when the repository is unknown."""
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    url, tags = f"/v2/{repo}/tags/list?n=100", []
    while url:
        r = c.req("GET", url)
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise c.fail(f"list tags of {repo}", r)
        tags.extend(r.json().get("tags") or [])
        nxt = r.links.get("next", {}).get("url")
        url = urljoin(c.base + "/", nxt) if nxt else None
    return tags


def catalog(
    base: str,
    *,
    page_size: int = 100,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
) -> list[str]:
    """All repositories from /v2/_catalog, following the Link header."""
    c = _Client(base, auth, verify, timeout, token_server=token_server)
    url, repos = f"/v2/_catalog?n={page_size}", []
    while url:
        r = c.req("GET", url)
        if r.status_code != 200:
            raise c.fail("list catalog", r)
        repos.extend(r.json().get("repositories") or [])
        nxt = r.links.get("next", {}).get("url")
        url = urljoin(c.base + "/", nxt) if nxt else None
    return repos


def push_many(
    base: str,
    n_repos: int | None = None,
    tags_per_repo: int = 1,
    shared_base_layer: bool = True,
    prefix: str = "bench/app",
    workers: int = 8,
    *,
    auth=None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    token_server=None,
    media: str = "docker",
    base_layer_size: int = 64 * 1024,
    layer_size: int = 2048,
    created_start: dt.datetime | None = None,
    tag_format: str = "build-{j:04d}",
    seed=None,
    repos: list[str] | None = None,
) -> list[PushedImage]:
    """Push ``n_repos`` repositories (``{prefix}-{i:04d}``, or exactly ``repos``) with ``tags_per_repo`` tags each.

    With ``shared_base_layer`` every image also carries one common base layer, uploaded once and
    cross-repo mounted into the other repositories, like real registries. Image ``j`` of a repo
    is created ``created_start + j hours`` (default: ``tags_per_repo`` hours ago), so the last tag
    is the newest. Returns the PushedImage list (repo and tag set), ordered by repo then tag."""
    rng = _rng(seed)
    base_layer = _randbytes(rng, base_layer_size) if shared_base_layer else None
    created_start = created_start or (dt.datetime.now(dt.UTC) - dt.timedelta(hours=tags_per_repo))
    if repos is None:
        if n_repos is None:
            raise ValueError("push_many needs n_repos or repos")
        repos = [f"{prefix}-{i:04d}" for i in range(n_repos)]
    repos = list(repos)
    n_repos = len(repos)
    local = threading.local()

    def client() -> _Client:
        if not hasattr(local, "c"):
            local.c = _Client(base, auth, verify, timeout, token_server=token_server)
        return local.c

    if base_layer is not None and repos:
        client().push_blob(repos[0], base_layer, skip_existing=True)

    def one_repo(i: int) -> list[PushedImage]:
        c, repo = client(), repos[i]
        if base_layer is not None and i > 0:
            c.push_blob(repo, base_layer, mount_from=repos[0])
        out = []
        for j in range(tags_per_repo):
            own = _randbytes(_rng(f"{seed}/{i}/{j}") if seed is not None else None, layer_size)
            layers = ([base_layer] if base_layer is not None else []) + [own]
            img = _build_image(
                c,
                repo,
                layers=layers,
                created=created_start + dt.timedelta(hours=j),
                media=media,
                arch="amd64",
                os_="linux",
                extra_annotations=None,
                seed=None,
            )
            tag = tag_format.format(i=i, j=j)
            c.put_manifest(repo, tag, img.manifest_bytes, img.media_type)
            img.tag = tag
            out.append(img)
        return out

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one_repo, range(n_repos)))
    return [img for per_repo in results for img in per_repo]
