"""Configuration: one YAML file in the seed's shape, validated by pydantic.

Errors name the file, the key path (``mirrorRepositories[1].url``) and the line. Unknown keys
are rejected with the nearest valid key suggested. Sizes (``500Gi``) and durations (``72h``)
parse. Secret values are references (``env:NAME``, ``prefect-secret:NAME``, ``file:/path``),
resolved only when used and masked in every repr, log line and exception.
"""

import difflib
import logging
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer,
                      ValidationError, field_validator, model_validator)

from ..errors import ConfigError, SecretError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- sizes, durations

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4, "p": 1000**5, "pb": 1000**5,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4, "pi": 1024**5, "pib": 1024**5,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    """``500Gi`` -> 536870912000; ``1.5T`` -> 1.5e12; ints pass through. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    if isinstance(value, float):
        return int(value)
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}: use a number with an optional unit "
                         "(B, K, M, G, T, KB..TB, Ki, Mi, Gi, Ti), e.g. 500Gi")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_DUR_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> timedelta:
    """``72h``, ``30d``, ``1h30m``, ``90s``, ``2w``; a bare number is seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    s = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return timedelta(seconds=float(s))
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {value!r}: use e.g. 72h, 30d, 1h30m, 90s")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    secs = int(td.total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % n == 0:
            return f"{secs // n}{unit}"
    return f"{secs}s"


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]

# --------------------------------------------------------------------------- secrets

_SECRET_RESOLVERS: dict[str, Callable[[str], str]] = {}


def register_secret_resolver(scheme: str, fn: Callable[[str], str]) -> None:
    """Register a resolver for ``scheme:NAME`` references (the Prefect task layer registers
    ``prefect-secret``; the core stays Prefect-free)."""
    _SECRET_RESOLVERS[scheme] = fn


def _env_resolver(name: str) -> str:
    if name not in os.environ:
        raise SecretError(f"environment variable {name} is not set")
    return os.environ[name]


def _file_resolver(path: str) -> str:
    try:
        return Path(os.path.expanduser(path)).read_text().strip()
    except OSError as e:
        raise SecretError(f"secret file {path} cannot be read: {e.strerror}") from None


register_secret_resolver("env", _env_resolver)
register_secret_resolver("file", _file_resolver)


class Secret:
    """A secret value given as a reference. ``str()``/``repr()`` never show a resolved value.

    ``env:NAME``, ``file:/path``, ``prefect-secret:block-name`` are references. A bare literal is
    accepted (the seed's examples use them) but masked the same way and flagged ``literal``.
    """

    __slots__ = ("ref", "key", "_value")
    _REF_RE = re.compile(r"^(env|file|prefect-secret):(.+)$")

    def __init__(self, ref: str, key: str = ""):
        self.ref = ref
        self.key = key
        self._value: str | None = None

    @property
    def scheme(self) -> str:
        m = self._REF_RE.match(self.ref)
        return m.group(1) if m else "literal"

    @property
    def literal(self) -> bool:
        return self.scheme == "literal"

    def describe(self) -> str:
        """Safe description: ``env:REG_PASS`` for references, ``<literal>`` for literals."""
        return "<literal>" if self.literal else self.ref

    def get(self) -> str:
        """Resolve the reference (cached). Raises SecretError naming the key and reference."""
        if self._value is not None:
            return self._value
        m = self._REF_RE.match(self.ref)
        if not m:
            self._value = self.ref
            return self._value
        scheme, name = m.group(1), m.group(2)
        fn = _SECRET_RESOLVERS.get(scheme)
        where = f"{self.key}: " if self.key else ""
        if fn is None:
            raise SecretError(f"{where}cannot resolve {scheme}:{name}: no resolver for '{scheme}' "
                              "(prefect-secret references resolve inside Prefect flows)")
        try:
            self._value = fn(name)
        except SecretError as e:
            raise SecretError(f"{where}{e}") from None
        except Exception as e:  # resolver failures must not leak values
            raise SecretError(f"{where}cannot resolve {scheme}:{name}: {type(e).__name__}") from None
        return self._value

    def check(self) -> None:
        self.get()

    def __repr__(self) -> str:
        return f"Secret({self.describe()})"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self):
        return hash(self.ref)


def _to_secret(v: Any) -> Secret:
    if isinstance(v, Secret):
        return v
    if v is None:
        raise ValueError("secret must not be empty")
    if not isinstance(v, str) or not v:
        raise ValueError("secret must be a string reference like env:NAME or prefect-secret:NAME")
    return Secret(v)


SecretStr = Annotated[Secret, BeforeValidator(_to_secret), PlainSerializer(lambda s: s.describe())]

# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True,
                              frozen=False)


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
    insecure: bool = False      # skip verification (logged as a warning)
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
    path: str | None = None                    # directory: the registry's rootdirectory
    bucket: str | None = None                  # s3: defaults to the registry's bucket
    root_directory: str = Field("", alias="rootDirectory")   # s3: the driver's rootdirectory

    @model_validator(mode="after")
    def _check(self):
        if self.type in ("directory", "filesystem") and not self.path:
            raise ValueError("path: required for directory storage")
        if self.path:
            self.path = os.path.expanduser(self.path)
        return self


class ProxyCacheConfig(_Model):
    storage: str | None = None


class ReclaimConfig(_Model):
    """How blob storage is reclaimed after manifest deletes.

    none: do nothing (report bytes as 'pending registry garbage-collect').
    command: run ``readOnly`` (switch the registry read-only), ``garbageCollect``, then
      ``readWrite`` (switch back), each an argv list; the registry refuses pushes meanwhile.
    kubernetes-job: run garbage-collect as a Kubernetes Job from ``jobTemplate``."""
    mode: Literal["none", "command", "kubernetes-job"] = "none"
    read_only: list[str] | None = Field(None, alias="readOnly")
    garbage_collect: list[str] | None = Field(None, alias="garbageCollect")
    read_write: list[str] | None = Field(None, alias="readWrite")
    job_template: str | None = Field(None, alias="jobTemplate")
    namespace: str | None = None
    timeout: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "command" and not self.garbage_collect:
            raise ValueError("reclaim.garbageCollect is required when mode is 'command'")
        if self.mode == "kubernetes-job" and not self.job_template:
            raise ValueError("reclaim.jobTemplate is required when mode is 'kubernetes-job'")
        return self


def _reclaim(v):
    if isinstance(v, str):
        return {"mode": v}
    return v


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
    timeout: Duration = timedelta(seconds=30)       # read timeout per call
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
            raise ValueError("must not carry credentials (user:password@): use auth with env: or "
                             "prefect-secret: references")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check(self):
        if self.url is None:
            if self.type == "proxy" and self.upstream:
                pass  # a pull-through cache known only by its upstream: nothing to act on
            else:
                raise ValueError("url: required key is missing (the registry's HTTP API address, "
                                 "e.g. https://registry.local:5000)")
        if self.type == "s3":
            missing = [k for k, v in (("endpoint", self.endpoint), ("bucket", self.bucket)) if not v]
            if missing:
                raise ValueError(f"type s3 needs {', '.join(missing)}")
            if (self.access_key is None) != (self.secret_key is None):
                raise ValueError("accessKey and secretKey must be given together")
        if self.type == "proxy" and not self.upstream:
            raise ValueError("upstream: required for type proxy")
        if self.storage is not None and self.storage.type == "s3" and not (self.storage.bucket or self.bucket):
            raise ValueError("storage type s3 needs a bucket (storage.bucket or bucket)")
        if self.tls.insecure:
            log.warning("registry %s: TLS verification disabled (tls.insecure: true)", self.name)
        return self

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


class TierConfig(_Model):
    name: str
    match: list[str] = Field(min_length=1)
    keep: Literal["forever"] | None = None
    keep_last: int | None = Field(None, alias="keepLast", ge=0)
    keep_days: int | None = Field(None, alias="keepDays", ge=0)
    ttl: Duration | None = None
    delete_repository: bool = Field(False, alias="deleteRepository")
    protect: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_policy(self):
        kinds = [self.keep is not None, self.keep_last is not None or self.keep_days is not None,
                 self.ttl is not None]
        if sum(kinds) != 1:
            raise ValueError("a tier needs exactly one policy: keep: forever, keepLast/keepDays, or ttl")
        if self.delete_repository and self.ttl is None:
            raise ValueError("deleteRepository only applies with ttl")
        return self


class GCConfig(_Model):
    registry: str | None = None
    days: int = Field(30, ge=0)
    keep_last: int = Field(5, alias="keepLast", ge=0)
    protect: list[str] = Field(default_factory=lambda: ["latest"])
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)
    max_delete_fraction: float = Field(0.5, alias="maxDeleteFraction", gt=0, le=1)
    delete_untagged: bool = Field(True, alias="deleteUntagged")
    untagged_grace: Duration = Field(timedelta(hours=1), alias="untaggedGrace")


class ExpireConfig(_Model):
    registry: str | None = None
    default_tier: str | None = Field(None, alias="defaultTier")
    max_delete_fraction: float = Field(0.5, alias="maxDeleteFraction", gt=0, le=1)
    untagged_grace: Duration = Field(timedelta(hours=1), alias="untaggedGrace")


class TagFilter(_Model):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class ReplicationRule(_Model):
    name: str | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)
    tags: TagFilter = Field(default_factory=TagFilter)
    prefix: str = ""
    delete_extraneous: bool = Field(False, alias="deleteExtraneous")
    concurrency: int = Field(8, ge=1, le=64)

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v):
        return [v] if isinstance(v, str) else v

    @property
    def rule_name(self) -> str:
        return self.name or f"{self.from_}-to-{'+'.join(self.to)}"


class BackupConfig(_Model):
    target: str = "file://./backups"
    keep: int = Field(14, ge=1)
    registries: list[str] | None = None
    endpoint: str | None = None
    access_key: SecretStr | None = Field(None, alias="accessKey")
    secret_key: SecretStr | None = Field(None, alias="secretKey")
    region: str = "us-east-1"
    blob_source: str | None = Field(None, alias="blobSource")

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if not re.match(r"^(s3://[^/]+(/.*)?|file://.+)$", v):
            raise ValueError(f"target must be s3://bucket/prefix or file:///path, got {v!r}")
        return v


class NotifyConfig(_Model):
    webhook: SecretStr
    format: Literal["slack", "alertmanager"] = "slack"


class CapacityConfig(_Model):
    warn: float = Field(0.80, gt=0, le=1)
    critical: float = Field(0.90, gt=0, le=1)
    notify: list[NotifyConfig] = Field(default_factory=list)
    pushgateway: str | None = None
    history: str | None = None
    forecast_window: Duration = Field(timedelta(days=14), alias="forecastWindow")

    @model_validator(mode="after")
    def _order(self):
        if self.warn >= self.critical:
            raise ValueError(f"warn ({self.warn}) must be below critical ({self.critical})")
        return self


class KubernetesConfig(_Model):
    kubeconfig: str | None = None
    contexts: list[str] = Field(default_factory=list)
    fail_closed: bool = Field(True, alias="failClosed")
    registry_aliases: dict[str, list[str]] = Field(default_factory=dict, alias="registryAliases")
    snapshot: str | None = None      # a recorded snapshot file instead of a live cluster (demo)
    timeout: Duration = timedelta(seconds=30)

    @field_validator("kubeconfig", "snapshot")
    @classmethod
    def _expand(cls, v):
        return os.path.expanduser(v) if v else v


class ReportsConfig(_Model):
    directory: str = "reports"


class Config(_Model):
    mirror_repositories: list[RegistryConfig] = Field(alias="mirrorRepositories", min_length=1)
    tiers: list[TierConfig] = Field(default_factory=list)
    gc: GCConfig | None = None
    expire: ExpireConfig | None = None
    replication: list[ReplicationRule] = Field(default_factory=list)
    backup: BackupConfig | None = None
    capacity: CapacityConfig | None = None
    kubernetes: KubernetesConfig | None = None
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    cache_dir: str | None = Field(None, alias="cacheDir")

    # set by load_config, not from YAML
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _refs(self):
        names = [r.name for r in self.mirror_repositories]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate registry name(s): {', '.join(sorted(dupes))}")
        known = set(names)

        def need(where: str, name: str | None):
            if name is not None and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
                raise ValueError(f"{where}: unknown registry {name!r}{hint}")

        if self.gc:
            need("gc.registry", self.gc.registry)
        if self.expire:
            need("expire.registry", self.expire.registry)
        for i, r in enumerate(self.replication):
            need(f"replication[{i}].from", r.from_)
            for t in r.to:
                need(f"replication[{i}].to", t)
        if self.backup:
            for n in self.backup.registries or []:
                need("backup.registries", n)
            need("backup.blobSource", self.backup.blob_source)
        if self.kubernetes:
            for n in self.kubernetes.registry_aliases:
                need("kubernetes.registryAliases", n)
        tier_names = [t.name for t in self.tiers]
        if self.expire and self.expire.default_tier and self.expire.default_tier not in tier_names:
            raise ValueError(f"expire.defaultTier: unknown tier {self.expire.default_tier!r}")
        return self

    def registry(self, name: str | None = None) -> RegistryConfig:
        """The named registry, or the first one when name is None."""
        if name is None:
            return self.mirror_repositories[0]
        for r in self.mirror_repositories:
            if r.name == name:
                return r
        close = difflib.get_close_matches(name, [r.name for r in self.mirror_repositories], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{self.source or 'config'}: no registry named {name!r} in mirrorRepositories{hint}")

    def registry_hosts(self, name: str) -> set[str]:
        """Every host name a registry is reached under (URL host, hosts, kubernetes aliases)."""
        r = self.registry(name)
        hosts = {r.host} if r.host else set()
        hosts.update(r.hosts)
        if self.kubernetes:
            hosts.update(self.kubernetes.registry_aliases.get(name, []))
        return {h.lower() for h in hosts if h}

    def reports_dir(self) -> Path:
        p = Path(self.reports.directory)
        if not p.is_absolute() and self.source:
            # relative to the working directory, like every other CLI tool
            p = Path.cwd() / p
        return p

    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(os.path.expanduser(self.cache_dir))
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return Path(base) / "regkeeper"


# --------------------------------------------------------------------------- loading


def _line_map(text: str) -> dict[tuple, int]:
    """Map key paths (('mirrorRepositories', 1, 'url')) to 1-based line numbers."""
    out: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(node, path):
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                out[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
                out[path + (key,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return out


def _fmt_path(loc: tuple) -> str:
    s = ""
    for p in loc:
        if isinstance(p, int):
            s += f"[{p}]"
        else:
            s += ("." if s else "") + str(p)
    return s


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model whose fields are valid at a key path (for 'did you mean')."""
    model: Any = Config
    for p in loc:
        if isinstance(p, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = None
        for name, f in model.model_fields.items():
            if p in (name, f.alias):
                field = f
                break
        if field is None:
            return None
        ann = field.annotation
        model = _unwrap_model(ann)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap_model(ann):
    import typing
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        m = _unwrap_model(a)
        if m is not None:
            return m
    return None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items() if n != "source"]


def _error_lines(e: ValidationError, source: str, lines: dict[tuple, int]) -> list[str]:
    msgs = []
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        # drop pydantic's union-branch labels
        loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x and "]" in x)))
        path = _fmt_path(loc) or "(top level)"
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        where = f"{source}:{line}" if line else source
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            key = str(loc[-1])
            hint = ""
            if parent is not None:
                valid = _valid_keys(parent)
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
            msgs.append(f"{where}: {path}: unknown key{hint}")
        elif err["type"] == "missing":
            msgs.append(f"{where}: {path}: required key is missing")
        else:
            msg = err["msg"]
            msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
            # model-level checks name their key as "key: message"
            m = re.match(r"^([A-Za-z][A-Za-z0-9]*): (.*)$", msg, re.S)
            model = _model_at(loc)
            if m and model is not None and m.group(1) in _valid_keys(model):
                path = _fmt_path(loc + (m.group(1),))
                msg = m.group(2)
                if loc + (m.group(1),) in lines:
                    where = f"{source}:{lines[loc + (m.group(1),)]}"
            if err["type"] in ("literal_error", "enum"):
                msg = f"{msg} (got {err.get('input')!r})"
            msgs.append(f"{where}: {path}: {msg}")
    return msgs


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with mirrorRepositories")
    lines = _line_map(text)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        msgs = _error_lines(e, source, lines)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs)) from None
    cfg.source = source
    # attach key paths to secrets so resolution errors name the key
    for i, r in enumerate(cfg.mirror_repositories):
        for attr, key in (("access_key", "accessKey"), ("secret_key", "secretKey")):
            s = getattr(r, attr)
            if s is not None:
                s.key = f"{source}: mirrorRepositories[{i}].{key}"
        if r.auth:
            for attr in ("username", "password", "token"):
                s = getattr(r.auth, attr)
                if s is not None:
                    s.key = f"{source}: mirrorRepositories[{i}].auth.{attr}"
    if cfg.capacity:
        for i, n in enumerate(cfg.capacity.notify):
            n.webhook.key = f"{source}: capacity.notify[{i}].webhook"
    if cfg.backup:
        for attr, key in (("access_key", "accessKey"), ("secret_key", "secretKey")):
            s = getattr(cfg.backup, attr)
            if s is not None:
                s.key = f"{source}: backup.{key}"
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from None
    return parse_config(text, str(p))


def check_secrets(cfg: Config, registry: str | None = None) -> None:
    """Resolve every secret a run will use now, so a missing one fails before any work."""
    regs = [cfg.registry(registry)] if registry else cfg.mirror_repositories
    for r in regs:
        for s in (r.access_key, r.secret_key):
            if s is not None:
                s.check()
        if r.auth:
            for s in (r.auth.username, r.auth.password, r.auth.token):
                if s is not None:
                    s.check()
