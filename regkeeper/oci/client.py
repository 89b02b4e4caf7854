"""One OCI Distribution client per registry, shared by every job.

- A pooled ``requests`` session; urllib3 ``Retry`` with exponential backoff and jitter for
  connection errors, 429 (Retry-After honoured) and 502/503/504; 400/401/403/404 never retried.
- Connect and read timeouts on every call; ``verify=`` on every call.
- Auth: anonymous, HTTP basic, static bearer token, and the bearer-token flow
  (WWW-Authenticate realm/service/scope; tokens cached per scope until expiry; one retry on 401
  with a fresh token).
- Manifests fetched with an Accept header listing all four manifest media types, checked
  against their digest, parsed into typed objects; a content-addressed disk cache by digest.
"""

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import __version__
from ..cache import DigestCache, sha256_digest, verify_digest
from ..errors import (AuthError, DeletesDisabledError, DigestMismatchError, NotFoundError,
                     ReadOnlyError, RegistryError, UnsupportedManifestError)
from ..models import (ACCEPT_MANIFESTS, CREATED_ANNOTATION, DOCKER_MANIFEST, DOCKER_SCHEMA1,
                     DOCKER_SCHEMA1_SIGNED, INDEX_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST,
                     Descriptor, Manifest, parse_time)
from ..util import scrub

log = logging.getLogger(__name__)

IMAGE_CONFIG_TYPES = ("application/vnd.docker.container.image.v1+json",
                      "application/vnd.oci.image.config.v1+json")
RETRY_STATUS = (429, 502, 503, 504)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DEFAULT_CHUNK = 16 * 1024 * 1024


_SLOW = object()   # sentinel: the fast HEAD path declined, use the normal one


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


def parse_manifest(raw: bytes, digest: str, media_type: str | None = None) -> Manifest:
    """Parse manifest bytes into a typed Manifest. Schema1 gets a clear error."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise UnsupportedManifestError(f"manifest {digest} is not JSON") from None
    if not isinstance(doc, dict):
        raise UnsupportedManifestError(f"manifest {digest} is not a JSON object")
    mt = doc.get("mediaType") or media_type or ""
    if doc.get("schemaVersion") == 1 or mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifestError(
            f"manifest {digest} is Docker schema1 (deprecated, unsupported): re-push it with a "
            "current client to convert it to schema2")
    subject = Descriptor.from_json(doc["subject"]) if isinstance(doc.get("subject"), dict) else None
    annotations = doc.get("annotations") or {}
    if "manifests" in doc or mt in INDEX_MEDIA_TYPES:
        return Manifest(digest=digest, media_type=mt or OCI_INDEX, kind="index", raw=raw,
                        children=[Descriptor.from_json(d) for d in doc.get("manifests") or []],
                        subject=subject, annotations=annotations,
                        artifact_type=doc.get("artifactType"))
    if "config" not in doc and "layers" not in doc:
        raise UnsupportedManifestError(f"manifest {digest} has neither config/layers nor manifests")
    config = Descriptor.from_json(doc["config"]) if isinstance(doc.get("config"), dict) else None
    layers = [Descriptor.from_json(d) for d in doc.get("layers") or []]
    artifact_type = doc.get("artifactType")
    kind = "image"
    if artifact_type or (config is not None and config.media_type not in IMAGE_CONFIG_TYPES):
        kind = "artifact"
    return Manifest(digest=digest, media_type=mt or (OCI_MANIFEST if "artifactType" in doc else DOCKER_MANIFEST),
                    kind=kind, raw=raw, config=config, layers=layers, subject=subject,
                    annotations=annotations, artifact_type=artifact_type)


def _parse_challenge(header: str) -> tuple[str, dict]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _next_link(resp: requests.Response) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return m.group(1) if m else None


class _Token:
    __slots__ = ("value", "expires")

    def __init__(self, value: str, expires: float):
        self.value = value
        self.expires = expires


class RegistryClient:
    """OCI Distribution API client for one registry. Thread-safe; share one per registry."""

    def __init__(self, name: str, url: str, *, username: str | None = None,
                 password: str | None = None, token: "str | Callable[[], str] | None" = None,
                 verify: bool | str = True, client_cert: tuple[str, str] | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.5, concurrency: int = 8, cache: DigestCache | None = None,
                 credentials: Callable[[], tuple[str, str] | None] | None = None):
        self.name = name
        self.url = url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self._username = username
        self._password = password
        self._credentials = credentials
        self._static_token = token
        self.verify = verify
        self.cert = client_cert
        self.timeout = (connect_timeout, read_timeout)
        self.concurrency = concurrency
        self.cache = cache or DigestCache(None)
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._scope_hint: dict[str, str] = {}
        self._token_lock = threading.Lock()
        self._auth_mode: str | None = "basic" if (username or credentials) else None
        self.retry = Retry(
            total=retries, connect=retries, read=retries, status=retries, other=0,
            backoff_factor=backoff, backoff_jitter=backoff, backoff_max=30,
            status_forcelist=RETRY_STATUS,
            allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE", "POST"}),
            respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
        )
        self.session = requests.Session()
        # ``concurrency`` bounds the requests in flight to this registry, however many tasks and
        # thread pools share the client; the connection pool is sized to match.
        self._inflight = threading.BoundedSemaphore(concurrency)
        adapter = HTTPAdapter(max_retries=self.retry, pool_connections=4,
                              pool_maxsize=concurrency + 2)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"regkeeper/{__version__}"
        self._fast = None            # lazily: (urllib3 pool, timeout, path prefix) or False
        if verify is False and self.url.startswith("https://"):
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("registry %s: TLS certificate verification is disabled", name)

    # ------------------------------------------------------------------ construction

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
        return cls(rc.name, rc.url, verify=verify, client_cert=cert,
                   connect_timeout=rc.connect_timeout.total_seconds(),
                   read_timeout=rc.timeout.total_seconds(), retries=rc.retries,
                   concurrency=rc.concurrency, cache=cache, credentials=creds,
                   token=rc.auth.token.get if rc.auth and rc.auth.token is not None else None)

    def __repr__(self) -> str:
        return f"RegistryClient({self.name!r}, {self.url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ auth

    def _creds(self) -> tuple[str, str] | None:
        if self._credentials is not None:
            return self._credentials()
        if self._username is not None:
            return self._username, self._password or ""
        return None

    def _bearer_static(self) -> str | None:
        """A configured static bearer token (a callable resolves the secret only when used)."""
        tok = self._static_token
        return tok() if callable(tok) else tok

    def _fetch_token(self, params: dict, scopes: list[str]) -> _Token:
        realm = params.get("realm")
        if not realm:
            raise AuthError("bearer challenge without realm", registry=self.name)
        q = [("service", params["service"])] if params.get("service") else []
        q += [("scope", s) for s in scopes if s]
        creds = self._creds()
        auth = requests.auth.HTTPBasicAuth(*creds) if creds else None
        url = realm + ("&" if "?" in realm else "?") + urlencode(q)
        try:
            resp = self.session.get(url, auth=auth, timeout=self.timeout, verify=self.verify,
                                    cert=self.cert)
        except requests.RequestException as e:
            raise RegistryError(f"token service {urlsplit(realm).netloc} unreachable: "
                                f"{type(e).__name__}", registry=self.name) from None
        self._count("TOKEN")
        if resp.status_code in (401, 403):
            raise AuthError(f"token service refused the credentials for scope {' '.join(scopes) or '(none)'}",
                            registry=self.name, status=resp.status_code)
        if resp.status_code != 200:
            raise RegistryError("token service error", registry=self.name, status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            raise RegistryError("token service returned no JSON", registry=self.name) from None
        value = body.get("token") or body.get("access_token")
        if not value:
            raise RegistryError("token service returned no token", registry=self.name)
        ttl = float(body.get("expires_in") or 60)
        return _Token(value, time.monotonic() + max(ttl - 10, ttl / 2))

    def _token_for(self, scope: str) -> str | None:
        with self._token_lock:
            t = self._tokens.get(scope)
            if t and t.expires > time.monotonic():
                return t.value
        return None

    @staticmethod
    def _scope_key(method: str, repo: str | None, path: str) -> str:
        if repo is None:
            return "registry:catalog:*" if "_catalog" in path else ""
        if method == "DELETE":
            return f"repository:{repo}:delete"
        if method in ("PUT", "POST", "PATCH"):
            return f"repository:{repo}:pull,push"
        return f"repository:{repo}:pull"

    def _auth_headers(self, key: str) -> dict:
        static = self._bearer_static()
        if static:
            return {"Authorization": f"Bearer {static}"}
        if self._auth_mode == "bearer":
            scope = self._scope_hint.get(key, key)
            tok = self._token_for(scope)
            if tok:
                return {"Authorization": f"Bearer {tok}"}
            return {}
        if self._auth_mode == "basic":
            creds = self._creds()
            if creds:
                import base64
                raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
                return {"Authorization": f"Basic {raw}"}
        return {}

    def _handle_challenge(self, resp: requests.Response, key: str, extra_scopes: list[str]) -> bool:
        """Answer a 401 challenge. True when a retry with new credentials makes sense."""
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(header)
        if scheme == "bearer" and not self._bearer_static():
            scope = params.get("scope", key)
            scopes = [scope] + [s for s in extra_scopes if s and s != scope]
            tok = self._fetch_token(params, scopes)
            with self._token_lock:
                self._auth_mode = "bearer"
                self._tokens[scope] = tok
                self._tokens[key] = tok
                self._scope_hint[key] = scope
            return True
        if scheme == "basic" and self._auth_mode != "basic" and self._creds():
            self._auth_mode = "basic"
            return True
        return False

    # ------------------------------------------------------------------ transport

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def _url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.url + path

    def request(self, method: str, path: str, *, repo: str | None = None,
                headers: dict | None = None, data=None, params=None, stream: bool = False,
                ok: Iterable[int] = (200,), allow_404: bool = False,
                extra_scopes: list[str] | None = None, timeout=None) -> requests.Response:
        """One API call with auth, retries, timeouts, and errors that name the registry,
        repository and HTTP status."""
        url = self._url(path)
        key = self._scope_key(method, repo, urlsplit(url).path)
        hdrs = dict(headers or {})
        ok = tuple(ok)
        for attempt in (1, 2):
            h = dict(hdrs)
            h.update(self._auth_headers(key))
            try:
                with self._inflight:
                    resp = self.session.request(method, url, headers=h, data=data, params=params,
                                                stream=stream, timeout=timeout or self.timeout,
                                                verify=self.verify, cert=self.cert,
                                                allow_redirects=method in ("GET", "HEAD"))
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"TLS verification failed for {self.host} ({_short(e)}); set "
                                    "tls.caFile to the registry's CA certificate", registry=self.name,
                                    repository=repo, url=url) from None
            except requests.exceptions.RetryError as e:
                raise RegistryError(f"{method} {urlsplit(url).path}: gave up after "
                                    f"{self.retry.total} retries ({_short(e)})", registry=self.name,
                                    repository=repo) from None
            except requests.exceptions.ConnectionError as e:
                raise RegistryError(f"{method} {urlsplit(url).path}: cannot connect to {self.host} "
                                    f"after retries ({_short(e)})", registry=self.name,
                                    repository=repo) from None
            except requests.exceptions.Timeout as e:
                raise RegistryError(f"{method} {urlsplit(url).path}: timed out ({_short(e)})",
                                    registry=self.name, repository=repo) from None
            self._count(method)
            if resp.status_code == 401 and attempt == 1:
                if self._handle_challenge(resp, key, extra_scopes or []):
                    resp.close()
                    if hasattr(data, "seek"):
                        data.seek(0)
                    continue
            break
        if resp.status_code in ok:
            return resp
        if resp.status_code == 404 and allow_404:
            return resp
        self._raise(resp, method, url, repo)

    def _raise(self, resp: requests.Response, method: str, url: str, repo: str | None):
        status = resp.status_code
        detail = ""
        try:
            body = resp.json()
            errs = body.get("errors") or []
            if errs:
                detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                                   for e in errs[:3])
        except ValueError:
            detail = scrub(resp.text[:200]) if not resp.raw or not getattr(resp, "_content_consumed", True) else ""
        finally:
            resp.close()
        path = urlsplit(url).path
        msg = f"{method} {path} failed" + (f": {scrub(detail)}" if detail else "")
        kw = dict(registry=self.name, repository=repo, status=status, url=url)
        if status in (401, 403):
            raise AuthError(msg + (" (credentials rejected)" if status == 401 else " (access denied)"), **kw)
        if status == 404:
            raise NotFoundError(msg, **kw)
        if status == 405:
            if method == "DELETE":
                raise DeletesDisabledError(
                    f"{msg}: deletes are disabled on this registry (storage.delete.enabled: false); "
                    "nothing more will be deleted", **kw)
            raise ReadOnlyError(f"{msg}: the registry refuses writes (read-only mode?)", **kw)
        if status in RETRY_STATUS:
            msg += f" (still failing after {self.retry.total} retries)"
        raise RegistryError(msg, **kw)

    # ------------------------------------------------------------------ API

    def ping(self) -> None:
        """GET /v2/: raises AuthError on bad credentials, RegistryError when unreachable."""
        self.request("GET", "/v2/")

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository, following Link-header pagination."""
        repos: list[str] = []
        path: str | None = f"/v2/_catalog?n={page_size}"
        while path:
            resp = self.request("GET", path)
            repos.extend(resp.json().get("repositories") or [])
            nxt = _next_link(resp)
            path = urljoin(self.url + "/", nxt) if nxt else None
        return repos

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        """Every tag of a repository; a repository with ``{"tags": null}`` is empty.
        A repository that does not exist raises NotFoundError."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n={page_size}"
        while path:
            resp = self.request("GET", path, repo=repo)
            tags.extend(resp.json().get("tags") or [])
            nxt = _next_link(resp)
            path = urljoin(self.url + "/", nxt) if nxt else None
        return tags

    def _fast_pool(self):
        """The session adapter's own urllib3 pool for this registry (same keep-alive connections,
        TLS settings and Retry policy), or False when requests must do the call (an environment
        proxy applies, or REGKEEPER_FAST_HEAD=0)."""
        if self._fast is None:
            import os
            import urllib3
            self._fast = False
            try:
                if os.environ.get("REGKEEPER_FAST_HEAD", "1") != "0" and not (
                        self.session.trust_env and requests.utils.get_environ_proxies(self.url)):
                    req = requests.Request("HEAD", self.url + "/v2/").prepare()
                    adapter = self.session.get_adapter(self.url)
                    pool = adapter.get_connection_with_tls_context(req, self.verify, None, self.cert)
                    self._fast = (pool, urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1]),
                                  urlsplit(self.url).path.rstrip("/"))
            except Exception as e:  # noqa: BLE001 - an older requests/urllib3: the normal path
                log.debug("fast HEAD path unavailable for %s: %s", self.name, e)
        return self._fast

    def _head_fast(self, repo: str, ref: str):
        """HEAD a manifest without requests' per-call overhead (~0.4 ms of client CPU instead of
        ~1 ms: warm scans and replication diffs are HEAD-bound). Answers only a clean 200 with
        a digest or a 404; anything else (auth challenges, errors) returns ``_SLOW`` and goes
        through ``request``, which owns auth and error semantics."""
        fast = self._fast_pool()
        if not fast:
            return _SLOW
        import urllib3
        pool, timeout, prefix = fast
        headers = {"Accept": ACCEPT_MANIFESTS, "User-Agent": self.session.headers.get("User-Agent", "")}
        headers.update(self._auth_headers(self._scope_key("HEAD", repo, "")))
        path = f"{prefix}/v2/{repo}/manifests/{ref}"
        try:
            with self._inflight:
                r = pool.urlopen("HEAD", path, headers=headers, retries=self.retry, timeout=timeout,
                                 redirect=False, preload_content=False, assert_same_host=False)
                try:
                    status, h = r.status, r.headers
                    digest = h.get("Docker-Content-Digest")
                    head = ManifestHead(digest, (h.get("Content-Type") or "").split(";")[0],
                                        int(h.get("Content-Length") or 0)) if digest else None
                finally:
                    r.drain_conn()
                    r.release_conn()
        except urllib3.exceptions.HTTPError as e:   # the Retry policy already retried
            raise RegistryError(f"HEAD {path}: cannot reach {self.host} after retries "
                                f"({type(e).__name__})", registry=self.name, repository=repo) from None
        if status == 200 and head is not None:
            self._count("HEAD")
            return head
        if status == 404:
            self._count("HEAD")
            return None
        return _SLOW

    def head_manifest(self, repo: str, ref: str) -> ManifestHead | None:
        """Digest, media type and size of a tag or digest; None when it does not exist."""
        fast = self._head_fast(repo, ref)
        if fast is not _SLOW:
            return fast
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", repo=repo,
                            headers={"Accept": ACCEPT_MANIFESTS}, allow_404=True)
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            # Some registries omit it on HEAD: fall back to GET (digest computed from bytes).
            m = self.get_manifest(repo, ref)
            return ManifestHead(m.digest, m.media_type, m.size)
        return ManifestHead(digest, resp.headers.get("Content-Type", "").split(";")[0],
                            int(resp.headers.get("Content-Length") or 0))

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """Fetch and parse a manifest by tag or digest. By digest, the disk cache answers first;
        the bytes are always checked against the digest."""
        by_digest = ref.startswith("sha256:") or ref.startswith("sha512:")
        if by_digest:
            hit = self.cache.get("manifests", ref)
            if hit is not None:
                return parse_manifest(hit[0], ref, hit[1])
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", repo=repo,
                            headers={"Accept": ACCEPT_MANIFESTS})
        raw = resp.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {ref} is larger than 4 MiB", registry=self.name, repository=repo)
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if by_digest:
            if not verify_digest(ref, raw):
                raise DigestMismatchError(f"manifest {ref}: content does not match its digest",
                                          registry=self.name, repository=repo)
            digest = ref
        else:
            digest = sha256_digest(raw)
            header = resp.headers.get("Docker-Content-Digest")
            if header and header.startswith("sha256:") and header != digest:
                raise DigestMismatchError(f"manifest {repo}:{ref}: registry says {header}, content "
                                          f"hashes to {digest}", registry=self.name, repository=repo)
        m = parse_manifest(raw, digest, media_type)
        self.cache.put("manifests", digest, raw, m.media_type)
        return m

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        """PUT raw manifest bytes under a tag or digest; returns the digest (checked)."""
        resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}", repo=repo,
                            headers={"Content-Type": media_type}, data=raw, ok=(201, 200, 202))
        digest = sha256_digest(raw)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatchError(f"manifest PUT {repo}:{ref}: registry stored {got}, expected {digest}",
                                      registry=self.name, repository=repo)
        return digest

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """DELETE by digest (removes every tag on it). True if deleted, False if already gone.
        405 raises DeletesDisabledError: deletes are disabled on that registry."""
        if not digest.startswith("sha256:"):
            raise ValueError(f"DELETE works by digest only, got {digest!r}")
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo,
                            ok=(202, 200, 204), allow_404=True)
        return resp.status_code != 404

    def head_blob(self, repo: str, digest: str) -> int | None:
        """Size of a blob in a repository, or None when absent."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, allow_404=True)
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length") or 0)

    def get_blob(self, repo: str, digest: str, *, cache: bool = False, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """A small blob in memory (configs), digest-checked; cached on disk when ``cache``."""
        if cache:
            hit = self.cache.get("blobs", digest)
            if hit is not None:
                return hit[0]
        chunks, size = [], 0
        with self.stream_blob(repo, digest) as (it, _):
            for c in it:
                size += len(c)
                if size > max_bytes:
                    raise RegistryError(f"blob {digest} larger than {max_bytes} bytes",
                                        registry=self.name, repository=repo)
                chunks.append(c)
        data = b"".join(chunks)
        if cache:
            self.cache.put("blobs", digest, data)
        return data

    @contextmanager
    def stream_blob(self, repo: str, digest: str, chunk_size: int = 1024 * 1024):
        """Yield ``(chunks, size)``: a streaming GET in constant memory. The digest is checked
        as the stream ends; a mismatch raises DigestMismatchError from the iterator."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, stream=True)
        size = int(resp.headers.get("Content-Length") or -1)
        algo, _, hexpart = digest.partition(":")

        def gen():
            h = hashlib.new(algo)
            try:
                for c in resp.iter_content(chunk_size=chunk_size):
                    h.update(c)
                    yield c
            except requests.RequestException as e:
                raise RegistryError(f"blob {digest}: stream broke ({_short(e)})",
                                    registry=self.name, repository=repo) from None
            if h.hexdigest() != hexpart:
                raise DigestMismatchError(f"blob {digest}: content does not match its digest",
                                          registry=self.name, repository=repo)
        try:
            yield gen(), size
        finally:
            resp.close()

    def get_config(self, repo: str, digest: str) -> dict:
        """The image config JSON (cached by digest)."""
        raw = self.get_blob(repo, digest, cache=True, max_bytes=8 * 1024 * 1024)
        try:
            return json.loads(raw)
        except ValueError:
            return {}

    def image_created(self, repo: str, manifest: Manifest) -> tuple[datetime | None, str | None]:
        """When the image was built: the config's ``created``, else the
        ``org.opencontainers.image.created`` annotation. Returns (time, source)."""
        if manifest.config is not None and manifest.config.media_type in IMAGE_CONFIG_TYPES:
            try:
                cfg = self.get_config(repo, manifest.config.digest)
            except NotFoundError:
                cfg = {}
            t = parse_time(cfg.get("created"))
            if t:
                return t, "config"
        t = parse_time((manifest.annotations or {}).get(CREATED_ANNOTATION))
        if t:
            return t, "annotation"
        return None, None

    # ------------------------------------------------------------------ uploads

    def _upload_location(self, resp: requests.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError("upload started without a Location header", registry=self.name,
                                status=resp.status_code)
        return urljoin(self.url + "/", loc)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. Returns None when mounted (201); otherwise the upload
        location the registry opened instead (202), for the caller to upload into."""
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={quote(digest)}&from={quote(from_repo)}",
                            repo=repo, ok=(201, 202),
                            extra_scopes=[f"repository:{from_repo}:pull"])
        if resp.status_code == 201:
            return None
        return self._upload_location(resp)

    def upload_blob(self, repo: str, digest: str, data: bytes | Callable[[], Iterator[bytes]],
                    size: int | None = None, *, chunk_size: int = DEFAULT_CHUNK,
                    location: str | None = None) -> None:
        """Upload a blob. ``data`` is bytes (monolithic PUT) or a callable returning a fresh
        chunk iterator (chunked PATCHes with Content-Range, constant memory). The registry
        checks the digest on the final PUT."""
        if location is None:
            resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, ok=(202,))
            location = self._upload_location(resp)
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.request("PUT", _with_query(location, digest=digest), repo=repo,
                         headers={"Content-Type": "application/octet-stream"}, data=bytes(data),
                         ok=(201, 204))
            return
        offset = 0
        buf = bytearray()

        def flush(chunk: bytes):
            nonlocal location, offset
            end = offset + len(chunk) - 1
            r = self._patch(repo, location, chunk, offset, end)
            location = self._upload_location(r)
            offset = end + 1

        for piece in data():
            buf += piece
            while len(buf) >= chunk_size:
                flush(bytes(buf[:chunk_size]))
                del buf[:chunk_size]
        if buf:
            flush(bytes(buf))
        buf = bytearray()
        if size is not None and offset != size:
            raise RegistryError(f"blob {digest}: uploaded {offset} bytes, expected {size}",
                                registry=self.name, repository=repo)
        self.request("PUT", _with_query(location, digest=digest), repo=repo,
                     headers={"Content-Length": "0"}, data=b"", ok=(201, 204))

    def _patch(self, repo: str, location: str, chunk: bytes, start: int, end: int) -> requests.Response:
        # PATCH is not retried by urllib3 (not idempotent in general); a failed chunk fails
        # the upload and the caller retries the whole blob.
        return self.request("PATCH", location, repo=repo, data=chunk, ok=(202, 204),
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Range": f"{start}-{end}",
                                     "Content-Length": str(len(chunk))})

    def map(self, fn: Callable, items: Iterable, max_workers: int | None = None):
        """Bounded-concurrency map sized to this client's connection pool."""
        from ..util import bounded_map
        return bounded_map(fn, items, max_workers or self.concurrency)


def _with_query(url: str, **params) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _short(e: BaseException) -> str:
    s = str(e)
    s = re.sub(r"\(Caused by .*", "", s)
    s = re.sub(r"<urllib3[^>]*>", "", s)
    return scrub(s)[:300].strip() or type(e).__name__
