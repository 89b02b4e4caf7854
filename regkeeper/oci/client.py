"""RegistryClient: the OCI Distribution API verbs of one registry, by resource: catalog, tags,
manifests, uploads (blob reads from blobs.py, uploads from uploads.py). One client per registry, shared by every
job and thread; the only module that sends DELETE or asks for a mount.

Transport concerns (session, timeouts, TLS, retries, error mapping) live in transport.py, auth
in auth.py. Manifests are fetched with the full Accept header (mediatypes.py), checked against
their digest and parsed (manifest.py); manifests and configs are cached on disk by digest.
"""

from collections.abc import Callable
from urllib.parse import quote, urljoin

import requests

from ..cache import DigestCache, sha256_digest, verify_digest
from ..errors import DigestMismatchError, RegistryError
from .auth import RegistryAuth
from .errormap import json_object, parse_json
from .manifest import (
    Manifest,
    ManifestHead,
    manifest_from_doc,
    parse_manifest,
)
from .mediatypes import ACCEPT_MANIFESTS
from .referrers import ReferrersReader
from .transport import SLOW, next_link
from .uploads import BlobUploads

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def _names(body: dict, field: str) -> list[str]:
    """``repositories`` / ``tags`` of a catalog or tags page; null is an empty list."""
    items = body.get(field) or []
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise RegistryError(f"unexpected response: {field!r} is not a list of names")
    return items


class RegistryClient(BlobUploads, ReferrersReader):
    """OCI Distribution API client for one registry. Thread-safe; share one per registry."""

    _rc = None  # the RegistryConfig of from_config: what a pickle carries (see __reduce__)
    # the quarantine namespace (set by RunContext when the config has a ``quarantine`` section):
    # ``repositories`` leaves it out, so every job but the quarantine's own ignores it
    apart: str | None = None

    def __init__(
        self,
        name: str,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: "str | Callable[[], str] | None" = None,
        verify: bool | str = True,
        client_cert: tuple[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        concurrency: int = 8,
        cache: DigestCache | None = None,
        credentials: Callable[[], tuple[str, str] | None] | None = None,
    ):
        auth = RegistryAuth(name, username=username, password=password, token=token, credentials=credentials)
        super().__init__(
            name,
            url,
            auth=auth,
            verify=verify,
            client_cert=client_cert,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
            backoff=backoff,
            concurrency=concurrency,
        )
        self.cache = cache or DigestCache(None)

    @classmethod
    def from_config(cls, rc, cache: DigestCache | None = None) -> "RegistryClient":
        """Build from a ``config.RegistryConfig``. Secrets are resolved lazily, on first auth."""
        verify: bool | str = True
        if rc.tls.insecure or not rc.tls.verify:
            verify = False
        elif rc.tls.ca_file:
            verify = rc.tls.ca_file
        cert = (rc.tls.cert_file, rc.tls.key_file) if rc.tls.cert_file and rc.tls.key_file else None
        creds = None
        if rc.auth and rc.auth.username is not None:
            u, p = rc.auth.username, rc.auth.password
            creds = lambda: (u.get(), p.get())  # noqa: E731 - resolved only when used
        client = cls(
            rc.name,
            rc.url,
            verify=verify,
            client_cert=cert,
            connect_timeout=rc.connect_timeout.total_seconds(),
            read_timeout=rc.timeout.total_seconds(),
            retries=rc.retries,
            concurrency=rc.concurrency,
            cache=cache,
            credentials=creds,
            token=rc.auth.token.get if rc.auth and rc.auth.token is not None else None,
        )
        client._rc = rc
        return client

    def __reduce__(self):  # in a process worker (Dask): rebuilt from its config, own sessions
        if self._rc is None:
            raise TypeError(f"{self!r} was not built by from_config and cannot be pickled")
        return (_rebuild, (self._rc, DigestCache(self.cache.root), self.apart))

    def __repr__(self) -> str:
        return f"RegistryClient({self.name!r}, {self.url!r})"

    def _auth_headers(self, key: str) -> dict:
        return self.auth.headers(key)

    # ------------------------------------------------------------------ catalog and tags

    def ping(self) -> None:
        """GET /v2/: raises AuthError on bad credentials, RegistryError when unreachable."""
        self.request("GET", "/v2/")

    def _pages(self, path: str, field: str, repo: str | None = None) -> list[str]:
        """Every name of a paginated list, following Link headers; each page is read and parsed
        inside its attempt."""
        out: list[str] = []

        def read(resp):
            return _names(json_object(resp.content), field), next_link(resp.headers.get("Link"))

        page: str | None = path
        while page:
            names, nxt = self.request("GET", page, repo=repo, read=read)
            out.extend(names)
            page = urljoin(self.url + "/", nxt) if nxt else None
        return out

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository, following Link-header pagination."""
        return self._pages(f"/v2/_catalog?n={page_size}", "repositories")

    def repositories(self) -> list[str]:
        """The catalog without the quarantine namespace (``apart``): what every job works on."""
        ns = self.apart
        return [r for r in self.catalog() if not ns or not (r == ns or r.startswith(ns + "/"))]

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        """Every tag of a repository; a repository with ``{"tags": null}`` is empty.
        A repository that does not exist raises NotFoundError."""
        return self._pages(f"/v2/{repo}/tags/list?n={page_size}", "tags", repo)

    # ------------------------------------------------------------------ manifests

    def head_manifest(self, repo: str, ref: str) -> ManifestHead | None:
        """Digest, media type and size of a tag or digest; None when it does not exist."""
        fast = self.head_fast(repo, ref)
        if fast is not SLOW:
            return fast
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            repo=repo,
            headers={"Accept": ACCEPT_MANIFESTS},
            allow_404=True,
        )
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            # Some registries omit it on HEAD: fall back to GET (digest computed from bytes).
            m = self.get_manifest(repo, ref)
            return ManifestHead(m.digest, m.media_type, m.size)
        return ManifestHead(
            digest,
            resp.headers.get("Content-Type", "").split(";")[0],
            int(resp.headers.get("Content-Length") or 0),
        )

    def cached_manifest(self, digest: str) -> Manifest | None:
        """The manifest from the disk cache (one file read, one digest check), or None."""
        hit = self.cache.get("manifests", digest)
        return parse_manifest(hit[0], digest, hit[1]) if hit is not None else None

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """Fetch and parse a manifest by tag or digest. By digest, the disk cache answers first;
        the bytes are always checked against the digest. A body that does not match its digest
        or is not JSON was cut in transit: retried."""
        by_digest = ref.startswith("sha256:") or ref.startswith("sha512:")
        if by_digest:
            cached = self.cached_manifest(ref)
            if cached is not None:
                return cached
        m = self.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            repo=repo,
            headers={"Accept": ACCEPT_MANIFESTS},
            read=lambda resp: self._read_manifest(resp, repo, ref, by_digest),
        )
        # the digest was checked (by digest) or computed (by tag) from these very bytes
        self.cache.put("manifests", m.digest, m.raw, m.media_type, checked=True)
        return m

    def _read_manifest(self, resp: requests.Response, repo: str, ref: str, by_digest: bool) -> Manifest:
        raw = resp.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {ref} is larger than 4 MiB")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if by_digest:
            if not verify_digest(ref, raw):
                raise DigestMismatchError(
                    f"manifest {ref}: content does not match its digest", transient=True
                )
            digest = ref
        else:
            digest = sha256_digest(raw)
            header = resp.headers.get("Docker-Content-Digest")
            if header and header.startswith("sha256:") and header != digest:
                raise DigestMismatchError(
                    f"manifest {repo}:{ref}: registry says {header}, content hashes to {digest}",
                    transient=True,
                )
        return manifest_from_doc(parse_json(raw), raw, digest, media_type)

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        """PUT raw manifest bytes under a tag or digest; returns the digest (checked)."""
        return self.put_manifest_checked(repo, ref, raw, media_type)[0]

    def put_manifest_checked(self, repo: str, ref: str, raw: bytes, media_type: str) -> tuple[str, bool]:
        """PUT raw manifest bytes; ``(digest, confirmed)``: ``confirmed`` when the registry
        answered with a Docker-Content-Digest equal to the digest of ``raw`` (what it stored
        is known: no read-back needed). A different digest raises DigestMismatchError."""
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            repo=repo,
            headers={"Content-Type": media_type},
            data=raw,
            ok=(201, 200, 202),
        )
        digest = sha256_digest(raw)
        self.note_put(resp)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatchError(
                f"manifest PUT {repo}:{ref}: registry stored {got}, expected {digest}",
                registry=self.name,
                repository=repo,
            )
        return digest, bool(got)

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """DELETE by digest (removes every tag on it). True if deleted, False if already gone.
        405 raises DeletesDisabledError: deletes are disabled on that registry."""
        if not digest.startswith("sha256:"):
            raise ValueError(f"DELETE works by digest only, got {digest!r}")
        resp = self.request(
            "DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo, ok=(202, 200, 204), allow_404=True
        )
        self.cache.discard("manifests", digest)  # a later read by digest must not find it here
        return resp.status_code != 404

    # ------------------------------------------------------------------ uploads

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. Returns None when mounted (201); otherwise the upload
        location the registry opened instead (202), for the caller to upload into."""
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={quote(digest)}&from={quote(from_repo)}",
            repo=repo,
            ok=(201, 202),
            extra_scopes=[f"repository:{from_repo}:pull"],
        )
        if resp.status_code == 201:
            return None
        return self._upload_location(resp)

    def cancel_upload(self, repo: str, location: str) -> bool:
        """DELETE an upload session (one a mount opened instead of mounting, or an upload that
        failed): the registry drops what it received. False when it was already gone. The
        location must be the latest one the session answered (it carries the upload state)."""
        resp = self.request("DELETE", location, repo=repo, ok=(204, 200, 202), allow_404=True)
        return resp.status_code != 404


def _rebuild(rc, cache: DigestCache, apart: str | None) -> RegistryClient:
    client = RegistryClient.from_config(rc, cache)
    client.apart = apart
    return client
