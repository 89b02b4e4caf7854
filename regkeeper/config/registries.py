"""``mirrorRepositories[]`` entries: a registry's type (local | s3 | proxy), URL, auth, TLS,
storage access, capacity, and the operational knobs (timeouts, retries, concurrency)."""

import logging
import os
import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..errors import RefusedError
from .model import _Model
from .reclaim import ReclaimConfig, _reclaim
from .secrets import SecretStr
from .units import Duration, Size

log = logging.getLogger(__name__)


class AuthConfig(_Model):
    """Registry credentials: HTTP basic (username + password) or a static bearer token.

    The bearer-token flow (WWW-Authenticate: Bearer realm=...) is negotiated automatically and
    uses username/password when given, anonymous otherwise."""

    username: SecretStr | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _pair(self):
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        return self


class TLSConfig(_Model):
    verify: bool = True
    ca_file: str | None = Field(None, alias="caFile")
    insecure: bool = False  # skip verification (logged as a warning)
    cert_file: str | None = Field(None, alias="certFile")
    key_file: str | None = Field(None, alias="keyFile")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _expand(cls, v):
        return os.path.expanduser(v) if v else v


class StorageConfig(_Model):
    """Where the registry keeps its data, when regkeeper can read it: enables push times from
    the storage (tag link mtimes / S3 LastModified) and physical capacity measurement."""

    type: Literal["directory", "filesystem", "s3"] = "directory"
    path: str | None = None  # directory: the registry's rootdirectory
    bucket: str | None = None  # s3: defaults to the registry's bucket
    root_directory: str = Field("", alias="rootDirectory")  # s3: the driver's rootdirectory

    @model_validator(mode="after")
    def _check(self):
        if self.type in ("directory", "filesystem") and not self.path:
            raise ValueError("path: required for directory storage")
        if self.path:
            self.path = os.path.expanduser(self.path)
        return self


class ProxyCacheConfig(_Model):
    """``type: proxy``: the pull-through cache's storage and its eviction rules.

    ``storage``: the cache registry's filesystem ``rootdirectory`` (inventory, capacity and
    eviction read it; an S3-backed cache gives the registry's ``storage`` section instead). ``pulledWithin``: evict an image not pulled within the window (needs pull
    events for the registry covering the window; otherwise nothing is evicted for that reason).
    ``maxBytes``: evict the least recently used images (the later of the last pull and the time
    it was cached) until the storage holds at most this many file bytes. An image in use in Kubernetes
    is never evicted. Eviction runs in gc, inside the registry's reclaim window.
    ``maxEvictFraction``: the blast-radius cap of one eviction (the one cap, as
    ``gc.maxDeleteFraction``): more than this fraction of the cached images is refused unless
    forced; every evicted image is fetched from the upstream again on its next pull."""

    storage: str | None = None
    max_bytes: Size | None = Field(None, alias="maxBytes", gt=0)
    pulled_within: Duration | None = Field(None, alias="pulledWithin")
    max_evict_fraction: float = Field(0.5, alias="maxEvictFraction", gt=0, le=1)

    @model_validator(mode="after")
    def _check(self):
        if self.storage:
            self.storage = os.path.expanduser(self.storage)
        if self.pulled_within is not None and self.pulled_within <= timedelta(0):
            raise ValueError("pulledWithin: must be a positive duration, e.g. 30d")
        return self

    @property
    def evicts(self) -> bool:
        return bool(self.max_bytes or self.pulled_within)


# what the other jobs cannot do on a proxy (pull-through) registry, and what to do instead
PROXY_REFUSALS = {
    "expire": "a pull-through cache answers DELETE with 405; its gc is eviction "
    "(proxyCache.pulledWithin, proxyCache.maxBytes)",
    "replicate to": "a pull-through cache takes no pushes (it answers 405); replicate to a registry "
    "of type local or s3",
    "replicate from": "reading every image through a pull-through cache fills the cache from its "
    "upstream; replicate from the upstream registry",
    "backup": "a pull-through cache holds copies of its upstream's images, fetched again on the "
    "next pull; back up the upstream registry",
    "backtest": "a pull-through cache's gc is eviction (proxyCache), which the backtest does not "
    "replay, and a scan through the cache would fill it from its upstream",
    "restore": "a pull-through cache takes no pushes (it answers 405); restore into a registry of "
    "type local or s3",
}


class RegistryConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    type: Literal["local", "s3", "proxy"] = "local"
    url: str | None = None
    auth: AuthConfig | None = None
    tls: TLSConfig = Field(default_factory=TLSConfig)
    storage: StorageConfig | None = None
    capacity_bytes: Size | None = Field(None, alias="capacityBytes")
    # s3 (seed keys)
    endpoint: str | None = None
    access_key: SecretStr | None = Field(None, alias="accessKey")
    secret_key: SecretStr | None = Field(None, alias="secretKey")
    bucket: str | None = None
    region: str = "us-east-1"
    # proxy (seed keys)
    upstream: str | None = None
    proxy_cache: ProxyCacheConfig | None = Field(None, alias="proxyCache")
    # operations
    reclaim: Annotated[ReclaimConfig, BeforeValidator(_reclaim)] = Field(default_factory=ReclaimConfig)
    concurrency: int = Field(8, ge=1, le=128)
    timeout: Duration = timedelta(seconds=30)  # read timeout per call
    connect_timeout: Duration = Field(timedelta(seconds=5), alias="connectTimeout")
    retries: int = Field(5, ge=0, le=20)
    hosts: list[str] = Field(default_factory=list)  # other names the registry is reached under

    @field_validator("url", "endpoint", "upstream")
    @classmethod
    def _url(cls, v):
        if v is None:
            return v
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL like https://registry.local:5000, got {v!r}")
        if "@" in v.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "must not carry credentials (user:password@): use auth with env: or "
                "prefect-secret: references"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check(self):
        if self.url is None:
            if self.type == "proxy" and self.upstream:
                pass  # a pull-through cache known only by its upstream: nothing to act on
            else:
                raise ValueError(
                    "url: required key is missing (the registry's HTTP API address, "
                    "e.g. https://registry.local:5000)"
                )
        if self.type == "s3":
            missing = [k for k, v in (("endpoint", self.endpoint), ("bucket", self.bucket)) if not v]
            if missing:
                raise ValueError(f"type s3 needs {', '.join(missing)}")
            if (self.access_key is None) != (self.secret_key is None):
                raise ValueError("accessKey and secretKey must be given together")
        if self.type == "proxy" and not self.upstream:
            raise ValueError("upstream: required for type proxy")
        if self.proxy_cache is not None and self.type != "proxy":
            raise ValueError(f"proxyCache: only for type proxy (this registry is type {self.type})")
        if self.proxy_cache is not None and self.proxy_cache.evicts and not self.proxy_cache.storage:
            if self.storage is None:
                raise ValueError(
                    "proxyCache.storage: required with proxyCache.maxBytes or pulledWithin (the cache "
                    "registry's filesystem rootdirectory, e.g. /var/lib/registry-cache, or a storage "
                    "section of type s3): eviction works on the storage because a proxy registry "
                    "answers DELETE with 405"
                )
        if self.proxy_cache is not None and self.proxy_cache.evicts and self.url is None:
            raise ValueError(
                "url: required with proxyCache.maxBytes or proxyCache.pulledWithin (the cache's "
                "own HTTP API address, where Kubernetes pulls from)"
            )
        s3_storage = self.storage is not None and self.storage.type == "s3"
        if s3_storage and not (self.storage.bucket or self.bucket):
            raise ValueError("storage type s3 needs a bucket (storage.bucket or bucket)")
        if self.tls.insecure:
            log.warning("registry %s: TLS verification disabled (tls.insecure: true)", self.name)
        return self

    def proxy_refusal(self, job: str) -> str | None:
        """Why ``job`` (a key of ``PROXY_REFUSALS``) does not act on this registry: None unless
        it is a proxy (pull-through cache). The one wording, used at load and at run time."""
        return PROXY_REFUSALS[job] if self.type == "proxy" else None

    def refuse_proxy(self, job: str) -> None:
        """Raise ``RefusedError`` naming the registry and why when ``job`` cannot act on it."""
        why = self.proxy_refusal(job)
        if why:
            raise RefusedError(f"registry {self.name} ({job}): it is type proxy: {why}")

    @property
    def host(self) -> str:
        """host[:port] of the API URL, as image references name it."""
        from urllib.parse import urlsplit

        return urlsplit(self.url).netloc if self.url else ""

    @property
    def storage_kind(self) -> str:
        """'filesystem' | 's3' | 'none': where push times and physical usage come from."""
        if self.storage is not None:
            return "s3" if self.storage.type == "s3" else "filesystem"
        if self.type == "s3" and self.access_key is not None:
            return "s3"
        return "none"
