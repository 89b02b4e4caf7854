"""Which images Kubernetes is using.

Three parts, all Prefect-free:

* :func:`parse_image_ref` turns the strings found in pod specs and container statuses
  (``nginx``, ``registry.local:5000/team/app:1.2``, ``repo:tag@sha256:...``,
  ``docker-pullable://repo@sha256:...``) into a normalised :class:`ImageRef`, following the
  docker reference grammar (github.com/distribution/reference) and its Docker Hub
  normalisation.
* :func:`read_in_use` reads every configured kubeconfig context with the official
  ``kubernetes`` client (Pods with all container kinds and their status ``imageID``s, and the pod
  templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs), all
  namespaces, paginated, every call bounded by a timeout. A context that cannot be read is
  recorded in :attr:`InUseScan.errors` with its name and the reason; the others are still read.
  :func:`load_snapshot` parses recorded list responses (or ``kubectl get ... -o json`` output)
  through the same code path, for demos and tests without an API server.
* :meth:`InUseScan.for_registry` keeps the references to one registry (matched by host,
  case-insensitively, plus the aliases the caller passes) and answers the protection question:
  a digest in use protects every tag on it; a tag in use protects its current digest.

Credentials from the kubeconfig are never logged, stored in a scan, or put in an error.
"""

import gc
import json
import logging
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RefusedError, RegkeeperError
from ..util import scrub

try:  # orjson comes with prefect; parsing 10k pods is ~2x faster with it
    import orjson as _orjson

    def _loads(data):
        return _orjson.loads(data)
except ImportError:  # pragma: no cover - exercised only without orjson
    def _loads(data):
        return json.loads(data)

_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_WAS_ENABLED = False


class _gc_paused:
    """Pause the cyclic GC while one page of JSON is parsed, read and freed.

    ``json.loads`` of 500 pods builds ~75k dicts/lists in one go; the allocation bursts trigger
    young-generation collections that traverse them all (measured: ~60% of the CPU of reading
    10k pods). Parsed JSON holds no reference cycles and the page is freed by refcount before
    the pause ends, so deferring collection for the few tens of milliseconds of one page loses
    nothing. Re-entrant across our worker threads; the collector's previous state is restored
    when the last page is done.
    """

    def __enter__(self):
        global _GC_DEPTH, _GC_WAS_ENABLED
        with _GC_LOCK:
            if _GC_DEPTH == 0:
                _GC_WAS_ENABLED = gc.isenabled()
                gc.disable()
            _GC_DEPTH += 1

    def __exit__(self, *exc):
        global _GC_DEPTH
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0 and _GC_WAS_ENABLED:
                gc.enable()


__all__ = [
    "ImageRef", "parse_image_ref", "normalize_host", "registry_hosts",
    "InUseSource", "ContextError", "InvalidRef", "InUseScan", "RegistryUsage",
    "KubeReadError", "KubeSnapshotError", "RESOURCES",
    "read_in_use", "load_snapshot", "scan_from_config", "extract_images",
]

log = logging.getLogger("regkeeper.kube")

SCAN_FORMAT = "regkeeper.kube.InUseScan/v1"
DEFAULT_HOST = "docker.io"
LEGACY_DEFAULT_HOST = "index.docker.io"
OFFICIAL_PREFIX = "library/"

# --------------------------------------------------------------------------------------------
# image references
# --------------------------------------------------------------------------------------------

# distribution/reference regexp.go, anchored pieces
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_NAME_TOTAL_MAX = 255
_RUNTIME_PREFIXES = ("docker-pullable://", "docker://")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference: ``host/repository[:tag][@digest]``.

    ``host`` is lower-cased (``docker.io`` for Docker Hub), ``repository`` carries the
    ``library/`` prefix for official Docker Hub images, ``tag`` is ``latest`` only when the
    reference had neither tag nor digest.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``host/repository`` (what docker calls the fully-qualified name)."""
        return f"{self.host}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short form docker prints: ``nginx``, ``team/app``, ``registry.local:5000/app``."""
        if self.host == DEFAULT_HOST:
            repo = self.repository
            if repo.startswith(OFFICIAL_PREFIX) and "/" not in repo[len(OFFICIAL_PREFIX):]:
                repo = repo[len(OFFICIAL_PREFIX):]
            return repo
        return self.name

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def canonical(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __str__(self) -> str:
        return self.canonical


def _bad(ref: str, why: str) -> ValueError:
    return ValueError(f"invalid image reference {ref!r}: {why}")


def parse_image_ref(s: str) -> ImageRef:
    """Parse and normalise an image reference the way docker/containerd/kubelet do.

    Accepts what appears in ``spec.containers[].image`` and ``status.containerStatuses[].imageID``
    (``docker-pullable://`` and ``docker://`` prefixes are stripped). Raises ``ValueError`` naming
    the reference when it is not valid (uppercase repository, bad tag or digest, bare image ID).
    """
    if not isinstance(s, str):
        raise ValueError(f"invalid image reference {s!r}: not a string")
    return _parse_cached(s)


@lru_cache(maxsize=65536)
def _parse_cached(original: str) -> ImageRef:
    s = original
    for prefix in _RUNTIME_PREFIXES:
        if s.startswith(prefix):
            s = s[len(prefix):]
            break
    if not s:
        raise _bad(original, "empty")
    if s != s.strip() or any(c.isspace() for c in s):
        raise _bad(original, "contains whitespace")
    if _IDENTIFIER_RE.match(s):
        raise _bad(original, "a 64-character hexadecimal image ID is not a repository reference")
    if _DIGEST_RE.match(s) and "/" not in s and "@" not in s:
        # "sha256:<hex>": a local image ID (what docker:// and some containerd imageIDs carry)
        algo = s.split(":", 1)[0]
        if algo.lower() in _DIGEST_HEX_LEN:
            raise _bad(original, "an image ID without a repository cannot be matched to a registry")

    # digest
    digest = None
    if "@" in s:
        s, _, digest = s.partition("@")
        if "@" in digest:
            raise _bad(original, "more than one '@'")
        m = _DIGEST_RE.match(digest)
        if not m:
            raise _bad(original, f"digest {digest!r} is not <algorithm>:<hex>")
        algo, hexpart = m.group(1), m.group(2)
        want = _DIGEST_HEX_LEN.get(algo)
        if want is None:
            raise _bad(original, f"unsupported digest algorithm {algo!r}")
        if len(hexpart) != want:
            raise _bad(original, f"{algo} digest must have {want} hex characters, not {len(hexpart)}")
        if hexpart != hexpart.lower():
            raise _bad(original, "digest hex must be lowercase")
        if not s:
            raise _bad(original, "no repository before '@'")

    # tag: the last ':' after the last '/'
    tag = None
    last_slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > last_slash:
        s, tag = s[:colon], s[colon + 1:]
        if not _TAG_RE.match(tag):
            raise _bad(original, f"tag {tag!r} is not valid (letters, digits, '_', '.', '-', at most 128)")

    # domain (splitDockerDomain)
    slash = s.find("/")
    first = s[:slash] if slash >= 0 else ""
    if slash == -1 or (not any(c in first for c in ".:") and first != "localhost"):
        # newer docker reads an upper-case first component ("Foo/bar") as a registry host; we
        # fold hosts to lower case, so that reading would not round-trip: reject it, as docker
        # did before (and as the kubelet of many clusters still does)
        host, remainder = DEFAULT_HOST, s
    else:
        host, remainder = first, s[slash + 1:]
        if not _DOMAIN_RE.match(host):
            raise _bad(original, f"registry host {host!r} is not valid")
        host = host.lower()
        if host == LEGACY_DEFAULT_HOST:
            host = DEFAULT_HOST
    if not remainder:
        raise _bad(original, "empty repository name")
    if remainder.lower() != remainder:
        raise _bad(original, f"repository name {remainder!r} must be lowercase")
    if not _PATH_RE.match(remainder):
        raise _bad(original, f"repository name {remainder!r} is not valid")
    if host == DEFAULT_HOST and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    if len(host) + 1 + len(remainder) > _NAME_TOTAL_MAX:
        raise _bad(original, f"repository name longer than {_NAME_TOTAL_MAX} characters")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host=host, repository=remainder, tag=tag, digest=digest)


def normalize_host(host: str) -> str:
    """``https://Registry.Local:5000/`` -> ``registry.local:5000``; ``index.docker.io`` -> ``docker.io``.

    No other magic: ``localhost:5000`` and ``127.0.0.1:5000`` stay different hosts, and a host
    without a port is not the same as one with ``:443``.
    """
    h = (host or "").strip()
    if "://" in h:
        p = urlsplit(h)
        h = p.netloc.rsplit("@", 1)[-1]
    h = h.split("/", 1)[0].lower()
    if not h:
        raise ValueError(f"registry host {host!r} is empty")
    return DEFAULT_HOST if h == LEGACY_DEFAULT_HOST else h


def registry_hosts(url: str | None, aliases: Iterable[str] = ()) -> list[str]:
    """The hosts a registry is reached under: its URL's host plus configured aliases
    (``kubernetes.registryAliases[<registry name>]``), normalised and de-duplicated."""
    out: list[str] = []
    for h in ([url] if url else []) + list(aliases or ()):
        n = normalize_host(h)
        if n not in out:
            out.append(n)
    return out


# --------------------------------------------------------------------------------------------
# scan results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InUseSource:
    """Where a reference was found, e.g. context ``prod``, ``shop/Deployment/web``, container
    ``app``, field ``spec.template.spec.containers[0].image``."""

    context: str
    namespace: str
    kind: str
    name: str
    container: str
    field: str

    def __str__(self) -> str:
        return f"{self.context}:{self.namespace}/{self.kind}/{self.name} container {self.container!r} ({self.field})"

    def to_dict(self) -> dict:
        return {"context": self.context, "namespace": self.namespace, "kind": self.kind,
                "name": self.name, "container": self.container, "field": self.field}


@dataclass(frozen=True, slots=True)
class ContextError:
    """A context (or one resource of it) that could not be read."""

    context: str
    reason: str
    resource: str | None = None     # "pods", "deployments.apps", ... when one list call failed
    status: int | None = None       # HTTP status when the API server answered

    def __str__(self) -> str:
        return f"context {self.context!r}: {self.reason}"

    def to_dict(self) -> dict:
        return {"context": self.context, "reason": self.reason, "resource": self.resource, "status": self.status}


@dataclass(frozen=True, slots=True)
class InvalidRef:
    """A string in an image field that is not a valid reference (the kubelet cannot pull it either)."""

    value: str
    source: InUseSource
    reason: str


class KubeReadError(RefusedError):
    """Kubernetes could not be fully read and fail-closed is on; carries the context errors."""

    def __init__(self, message: str, errors: list[ContextError]):
        super().__init__(message)
        self.errors = list(errors)


class KubeSnapshotError(RegkeeperError):
    """A recorded snapshot file could not be read or understood (names the file and why)."""


class RegistryUsage:
    """The references of one scan that point at one registry (by host)."""

    def __init__(self, hosts: Iterable[str], refs: Iterable[tuple[ImageRef, InUseSource]]):
        self.hosts = frozenset(normalize_host(h) for h in hosts)
        self._tags: dict[str, dict[str, list[InUseSource]]] = defaultdict(lambda: defaultdict(list))
        self._digests: dict[str, dict[str, list[InUseSource]]] = defaultdict(lambda: defaultdict(list))
        self.refs: list[tuple[ImageRef, InUseSource]] = []
        for ref, src in refs:
            if ref.host not in self.hosts:
                continue
            self.refs.append((ref, src))
            # repo:tag@digest: the runtime pulls the digest, but the tag is named too; keep both
            # (never delete what a workload names).
            if ref.tag is not None:
                self._tags[ref.repository][ref.tag].append(src)
            if ref.digest is not None:
                self._digests[ref.repository][ref.digest].append(src)

    def repositories(self) -> list[str]:
        return sorted(set(self._tags) | set(self._digests))

    def tags_in_use(self, repo: str) -> dict[str, list[InUseSource]]:
        return {t: list(s) for t, s in self._tags.get(repo, {}).items()}

    def digests_in_use(self, repo: str) -> dict[str, list[InUseSource]]:
        return {d: list(s) for d, s in self._digests.get(repo, {}).items()}

    def is_protected(self, repo: str, tag: "str | Iterable[str] | None", digest: str | None) -> list[InUseSource]:
        """Why ``repo`` at ``tag`` (current digest ``digest``) must be kept; empty when it need not.

        A digest in use protects every tag on it (and the untagged manifest); a tag in use
        protects the digest it currently points at, which is the ``digest`` the caller passes.
        ``tag`` may be one tag, several tags of the same manifest, or None.
        """
        out: list[InUseSource] = []
        if digest is not None:
            out.extend(self._digests.get(repo, {}).get(digest, ()))
        tags = [tag] if isinstance(tag, str) else list(tag or ())
        repo_tags = self._tags.get(repo, {})
        for t in tags:
            out.extend(repo_tags.get(t, ()))
        seen: set[InUseSource] = set()
        uniq = []
        for s in out:
            if s not in seen:
                seen.add(s)
                uniq.append(s)
        return uniq

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        return f"RegistryUsage(hosts={sorted(self.hosts)}, refs={len(self.refs)}, repositories={len(self.repositories())})"


@dataclass
class InUseScan:
    """Every image reference found, where it was found, and which contexts failed."""

    refs: list[tuple[ImageRef, InUseSource]] = field(default_factory=list)
    errors: list[ContextError] = field(default_factory=list)
    contexts_read: list[str] = field(default_factory=list)
    invalid: list[InvalidRef] = field(default_factory=list)
    objects: dict[str, dict[str, int]] = field(default_factory=dict)   # context -> resource -> count
    source: str = "kubernetes"
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def contexts_failed(self) -> list[str]:
        out: list[str] = []
        for e in self.errors:
            if e.context not in out:
                out.append(e.context)
        return out

    def images(self) -> set[ImageRef]:
        return {r for r, _ in self.refs}

    def for_registry(self, hosts: Iterable[str] | str) -> RegistryUsage:
        """References whose host is one of ``hosts`` (case-insensitive; pass the registry's own
        host and its aliases; URLs are accepted)."""
        if isinstance(hosts, str):
            hosts = [hosts]
        return RegistryUsage(hosts, self.refs)

    def failure_message(self) -> str:
        if not self.errors:
            return ""
        parts = "; ".join(str(e) for e in self.errors)
        n = len(self.contexts_failed)
        return f"Kubernetes in-use images could not be read from {n} context{'s' if n != 1 else ''}: {parts}"

    def raise_if_incomplete(self) -> None:
        """Raise :class:`KubeReadError` (a RefusedError) naming every failed context and why."""
        if self.errors:
            raise KubeReadError(self.failure_message() + " (kubernetes.failClosed is on: nothing is deleted)",
                                self.errors)

    def summary(self) -> str:
        per = ", ".join(
            f"{ctx}: " + " ".join(f"{n} {r}" for r, n in counts.items())
            for ctx, counts in self.objects.items()
        )
        s = (f"{len(self.refs)} image references ({len(self.images())} distinct) from "
             f"{len(self.contexts_read)} context(s) in {self.duration_seconds:.2f}s")
        if per:
            s += f" [{per}]"
        if self.errors:
            s += f"; {len(self.errors)} error(s): " + "; ".join(str(e) for e in self.errors)
        return s

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": SCAN_FORMAT,
            "source": self.source,
            "durationSeconds": round(self.duration_seconds, 3),
            "contextsRead": list(self.contexts_read),
            "errors": [e.to_dict() for e in self.errors],
            "objects": self.objects,
            "refs": [{"ref": r.canonical, **s.to_dict()} for r, s in self.refs],
            "invalid": [{"value": i.value, "reason": i.reason, **i.source.to_dict()} for i in self.invalid],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping) -> "InUseScan":
        if d.get("format") != SCAN_FORMAT:
            raise ValueError(f"not a regkeeper in-use scan (format {d.get('format')!r}, expected {SCAN_FORMAT!r})")

        def src(x):
            return InUseSource(context=x["context"], namespace=x.get("namespace", ""), kind=x["kind"],
                               name=x["name"], container=x.get("container", ""), field=x.get("field", ""))

        return cls(
            refs=[(parse_image_ref(x["ref"]), src(x)) for x in d.get("refs") or []],
            errors=[ContextError(context=e["context"], reason=e["reason"], resource=e.get("resource"),
                                 status=e.get("status")) for e in d.get("errors") or []],
            contexts_read=list(d.get("contextsRead") or []),
            invalid=[InvalidRef(value=x["value"], reason=x.get("reason", ""), source=src(x))
                     for x in d.get("invalid") or []],
            objects={k: dict(v) for k, v in (d.get("objects") or {}).items()},
            source=d.get("source", "kubernetes"),
            duration_seconds=float(d.get("durationSeconds") or 0.0),
        )

    @classmethod
    def from_json(cls, data: "str | bytes | Mapping") -> "InUseScan":
        if isinstance(data, Mapping):
            return cls.from_dict(data)
        return cls.from_dict(json.loads(data))


# --------------------------------------------------------------------------------------------
# extracting images from API objects (shared by the live reader and snapshots)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Resource:
    plural: str
    kind: str
    group: str
    api: str
    method: str
    path: str

    @property
    def display(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[_Resource, ...] = (
    _Resource("pods", "Pod", "", "CoreV1Api", "list_pod_for_all_namespaces", "/api/v1/pods"),
    _Resource("deployments", "Deployment", "apps", "AppsV1Api", "list_deployment_for_all_namespaces",
              "/apis/apps/v1/deployments"),
    _Resource("statefulsets", "StatefulSet", "apps", "AppsV1Api", "list_stateful_set_for_all_namespaces",
              "/apis/apps/v1/statefulsets"),
    _Resource("daemonsets", "DaemonSet", "apps", "AppsV1Api", "list_daemon_set_for_all_namespaces",
              "/apis/apps/v1/daemonsets"),
    _Resource("replicasets", "ReplicaSet", "apps", "AppsV1Api", "list_replica_set_for_all_namespaces",
              "/apis/apps/v1/replicasets"),
    _Resource("jobs", "Job", "batch", "BatchV1Api", "list_job_for_all_namespaces", "/apis/batch/v1/jobs"),
    _Resource("cronjobs", "CronJob", "batch", "BatchV1Api", "list_cron_job_for_all_namespaces",
              "/apis/batch/v1/cronjobs"),
)
_BY_KIND = {r.kind: r for r in RESOURCES}
_BY_LIST_KIND = {r.kind + "List": r for r in RESOURCES}

_CONTAINER_KEYS = (
    ("containers", "containerStatuses"),
    ("initContainers", "initContainerStatuses"),
    ("ephemeralContainers", "ephemeralContainerStatuses"),
)


def extract_images(kind: str, obj: Mapping) -> Iterator[tuple[str, str, str]]:
    """Yield ``(image string, container name, field path)`` for one API object.

    Pods: spec containers of all three kinds and status ``imageID``s. Workloads: the pod
    template (``spec.template.spec``; ``spec.jobTemplate.spec.template.spec`` for CronJobs).
    Any other kind with a ``spec.template.spec`` pod template is read the same way.
    """
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield from _pod_spec_images(spec, "spec")
        status = obj.get("status") or {}
        for _, skey in _CONTAINER_KEYS:
            for i, cs in enumerate(status.get(skey) or ()):
                iid = cs.get("imageID")
                if iid:
                    yield iid, cs.get("name") or "", f"status.{skey}[{i}].imageID"
        return
    if kind == "CronJob":
        tspec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
        if tspec:
            yield from _pod_spec_images(tspec, "spec.jobTemplate.spec.template.spec")
        return
    tspec = (spec.get("template") or {}).get("spec")
    if tspec:
        yield from _pod_spec_images(tspec, "spec.template.spec")


def _pod_spec_images(spec: Mapping, prefix: str) -> Iterator[tuple[str, str, str]]:
    for key, _ in _CONTAINER_KEYS:
        for i, c in enumerate(spec.get(key) or ()):
            img = c.get("image")
            if img:
                yield img, c.get("name") or "", f"{prefix}.{key}[{i}].image"


def _is_image_id_only(value: str) -> bool:
    """``sha256:<hex>`` / ``docker://sha256:<hex>``: a local image ID, not a pullable reference."""
    v = value
    for prefix in _RUNTIME_PREFIXES:
        if v.startswith(prefix):
            v = v[len(prefix):]
            break
    return "/" not in v and "@" not in v and bool(_DIGEST_RE.match(v)) and v.split(":", 1)[0] in _DIGEST_HEX_LEN


class _Collector:
    """Refs of one (context, resource) listing; merged into the scan only when complete."""

    __slots__ = ("context", "refs", "invalid", "count", "image_ids_skipped")

    def __init__(self, context: str):
        self.context = context
        self.refs: list[tuple[ImageRef, InUseSource]] = []
        self.invalid: list[InvalidRef] = []
        self.count = 0
        self.image_ids_skipped = 0

    def add_object(self, kind: str, obj: Mapping) -> None:
        self.count += 1
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ""
        name = meta.get("name") or ""
        for value, container, fld in extract_images(kind, obj):
            src = InUseSource(self.context, ns, kind, name, container, fld)
            if not isinstance(value, str):
                self.invalid.append(InvalidRef(repr(value), src, "not a string"))
                continue
            try:
                ref = _parse_cached(value)
            except ValueError as e:
                if fld.endswith(".imageID") and _is_image_id_only(value):
                    self.image_ids_skipped += 1
                else:
                    self.invalid.append(InvalidRef(value, src, str(e)))
                continue
            self.refs.append((ref, src))


# --------------------------------------------------------------------------------------------
# reading live clusters
# --------------------------------------------------------------------------------------------

IN_CLUSTER = "in-cluster"


@dataclass
class _Target:
    context: str
    make_client: Callable[[], object] | None   # returns kubernetes.client.ApiClient
    error: str | None = None


def _kubeconfig_paths(kubeconfig: str | None) -> tuple[list[str] | None, str]:
    """(existing kubeconfig files or None for in-cluster, description); raises ValueError when none."""
    if kubeconfig:
        paths = [os.path.expanduser(p) for p in str(kubeconfig).split(os.pathsep) if p]
        existing = [p for p in paths if os.path.isfile(p)]
        if not existing:
            raise ValueError(f"kubeconfig file not found: {kubeconfig} (kubernetes.kubeconfig)")
        return existing, "kubernetes.kubeconfig"
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [os.path.expanduser(p) for p in env.split(os.pathsep) if p]
        existing = [p for p in paths if os.path.isfile(p)]
        if not existing:
            raise ValueError(f"KUBECONFIG names no existing file ({env})")
        return existing, "KUBECONFIG"
    home = os.path.expanduser("~/.kube/config")
    if os.path.isfile(home):
        return [home], "~/.kube/config"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None, "in-cluster service account"
    raise ValueError("no kubeconfig: kubernetes.kubeconfig is not set, KUBECONFIG is not set, "
                     "~/.kube/config does not exist, and this is not a pod (KUBERNETES_SERVICE_HOST unset)")


def _kubeconfig_contexts(paths: list[str]) -> tuple[list[str], str | None]:
    """Context names and current-context across (merged) kubeconfig files; first file wins."""
    import yaml

    names: list[str] = []
    current = None
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read kubeconfig {p}: {type(e).__name__}: {scrub(str(e))[:300]}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"kubeconfig {p} is not a mapping")
        for c in doc.get("contexts") or []:
            if isinstance(c, dict) and c.get("name") and c["name"] not in names:
                names.append(str(c["name"]))
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
    return names, current


def _resolve_targets(kubeconfig, contexts, make_configuration) -> list[_Target]:
    wanted = list(dict.fromkeys(c for c in (contexts or []) if c))   # de-duplicated, in order
    try:
        paths, how = _kubeconfig_paths(kubeconfig)
    except ValueError as e:
        return [_Target(c, None, str(e)) for c in (wanted or ["(current-context)"])]

    if paths is None:  # in-cluster
        def make_incluster():
            from kubernetes import client as kclient, config as kconfig
            cfg = make_configuration()
            kconfig.load_incluster_config(client_configuration=cfg)
            return kclient.ApiClient(configuration=cfg)

        if wanted and wanted != [IN_CLUSTER]:
            why = (f"no kubeconfig to find context in (running in-cluster with the service account; "
                   f"only context {IN_CLUSTER!r} is available)")
            return [_Target(c, None, why) for c in wanted]
        return [_Target(IN_CLUSTER, make_incluster)]

    joined = os.pathsep.join(paths)
    try:
        names, current = _kubeconfig_contexts(paths)
    except ValueError as e:
        return [_Target(c, None, str(e)) for c in (wanted or ["(current-context)"])]
    if not wanted:
        if not current:
            return [_Target("(current-context)", None,
                            f"kubeconfig {joined} has no current-context; set kubernetes.contexts")]
        wanted = [current]

    def maker(ctx):
        def make():
            from kubernetes import config as kconfig
            return kconfig.new_client_from_config(config_file=joined, context=ctx, persist_config=False,
                                                  client_configuration=make_configuration())
        return make

    out = []
    for c in wanted:
        if c not in names:
            avail = ", ".join(names) or "none"
            out.append(_Target(c, None, f"context {c!r} not found in kubeconfig {joined} (from {how}; "
                                        f"contexts there: {avail})"))
        else:
            out.append(_Target(c, maker(c)))
    return out


def _server_of(api_client) -> str:
    try:
        p = urlsplit(api_client.configuration.host)
        netloc = p.netloc.rsplit("@", 1)[-1]
        return f"{p.scheme}://{netloc}{p.path.rstrip('/')}"
    except Exception:  # noqa: BLE001
        return "<API server>"


def _describe(exc: BaseException, res: _Resource, server: str, timeout) -> tuple[str, int | None, bool]:
    """(reason, HTTP status, context-wide?) for an exception raised while listing ``res``."""
    from kubernetes.client.exceptions import ApiException
    import urllib3.exceptions as ue

    what = f"listing {res.display} (GET {res.path})"
    if isinstance(exc, ApiException):
        if exc.status:
            msg = ""
            body = exc.body
            if body:
                try:
                    doc = _loads(body)
                    if isinstance(doc, dict):
                        msg = str(doc.get("message") or "")
                except Exception:  # noqa: BLE001 - not a Status object
                    msg = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            msg = scrub(" ".join(msg.split()))[:300]
            if exc.status == 401:   # the credentials are rejected: true of every resource, say it once
                return (f"HTTP 401 Unauthorized from API server {server}: the kubeconfig credentials were "
                        f"rejected (expired or wrong token/certificate)", 401, True)
            reason = f"HTTP {exc.status} {exc.reason or ''}".rstrip() + f" {what} from {server}"
            if msg:
                reason += f": {msg}"
            return reason, int(exc.status), False
        # status 0: the client wraps TLS failures this way
        return f"TLS error talking to {server}: {scrub(' '.join(str(exc.reason).split()))[:300]}", None, True
    inner = exc
    if isinstance(exc, ue.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    if isinstance(inner, ue.NewConnectionError):
        detail = str(inner).rsplit(":", 1)[-1].strip() or "connection failed"
        if "refused" in str(inner).lower():
            detail = "connection refused"
        return f"cannot connect to API server {server} ({detail})", None, True
    if isinstance(inner, ue.ConnectTimeoutError):
        return f"timed out connecting to API server {server} (connect timeout {timeout[0]}s)", None, True
    if isinstance(inner, ue.ReadTimeoutError):
        return f"read timed out after {timeout[1]}s {what} from {server}", None, False
    if isinstance(inner, ue.SSLError):
        return f"TLS error talking to {server}: {scrub(str(inner))[:300]}", None, True
    if isinstance(inner, (ue.ProtocolError, ConnectionError)):
        return f"connection dropped by API server {server} while {what}", None, False
    if isinstance(inner, ue.ResponseError):
        return f"gave up after retries {what} from {server}: {scrub(str(inner))[:200]}", None, False
    if isinstance(exc, ValueError):   # json / orjson decode errors, non-object responses
        return f"invalid response {what} from {server}: {scrub(str(exc))[:200]}", None, False
    return f"{type(exc).__name__} {what} from {server}: {scrub(str(exc))[:300]}", None, False


class _ListFailed(Exception):
    def __init__(self, reason: str, status: int | None, context_wide: bool):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.context_wide = context_wide


def _list_resource(api_client, res: _Resource, context: str, *, page_size: int, timeout) -> _Collector:
    """List one resource across all namespaces, page by page, into a collector."""
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    method = getattr(getattr(kclient, res.api)(api_client), res.method)
    server = _server_of(api_client)
    restarted = False
    while True:
        col = _Collector(context)
        cont: str | None = None
        seen_tokens: set[str] = set()
        try:
            while True:
                kwargs = {"_preload_content": False, "_request_timeout": timeout}
                if page_size:
                    kwargs["limit"] = page_size
                if cont:
                    kwargs["_continue"] = cont
                resp = method(**kwargs)
                try:
                    body = resp.data
                finally:
                    resp.release_conn()
                with _gc_paused():   # parse, extract, and free the page before the GC sees it
                    doc = _loads(body)
                    del body
                    if not isinstance(doc, dict):
                        raise ValueError(f"JSON response is a {type(doc).__name__}, not a {res.kind}List")
                    for item in doc.get("items") or ():
                        col.add_object(res.kind, item)
                    cont = (doc.get("metadata") or {}).get("continue") or None
                    del doc
                if not cont:
                    return col
                if cont in seen_tokens:
                    raise _ListFailed(f"API server repeated a continue token listing {res.display} "
                                      f"(GET {res.path}) from {server}", None, False)
                seen_tokens.add(cont)
        except ApiException as e:
            if e.status == 410 and cont and not restarted:
                # continue token expired mid-list: start this list again once, from scratch
                log.info("context %r: continue token for %s expired; restarting the list", context, res.display)
                restarted = True
                continue
            raise _ListFailed(*_describe(e, res, server, timeout)) from None
        except _ListFailed:
            raise
        except Exception as e:  # noqa: BLE001 - urllib3 errors, JSON errors
            raise _ListFailed(*_describe(e, res, server, timeout)) from None


def _make_configuration_factory(retries: int, backoff: float):
    def make():
        from kubernetes import client as kclient
        from urllib3.util.retry import Retry

        cfg = type.__call__(kclient.Configuration)
        cfg.retries = Retry(
            total=retries, connect=retries, read=retries, status=retries,
            backoff_factor=backoff, status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}), respect_retry_after_header=True,
            raise_on_status=False,   # after the last retry hand back the response: we report its status
        )
        cfg.debug = False
        return cfg
    return make


def read_in_use(kubeconfig: str | None = None, contexts: list[str] | None = None, *,
                request_timeout: float | tuple[float, float] = 30, page_size: int = 500,
                retries: int = 3, backoff: float = 0.5, max_workers: int = 4) -> InUseScan:
    """Read every image reference from the given kubeconfig contexts (all namespaces).

    ``kubeconfig`` None: ``KUBECONFIG``, then ``~/.kube/config``, then the in-cluster service
    account. ``contexts`` None or empty: the kubeconfig's current context. Every list call is
    paginated (``limit``/``continue``) and bounded by ``request_timeout`` (seconds, or
    ``(connect, read)``); 429/5xx and connection errors are retried ``retries`` times with
    backoff. A context that fails is recorded in ``.errors`` and does not stop the others.
    """
    t0 = time.monotonic()
    if isinstance(request_timeout, tuple):
        timeout = (float(request_timeout[0]), float(request_timeout[1]))
    else:
        timeout = (min(10.0, float(request_timeout)), float(request_timeout))
    scan = InUseScan(source="kubernetes")
    targets = _resolve_targets(kubeconfig, contexts, _make_configuration_factory(retries, backoff))

    clients: dict[str, object] = {}
    ctx_errors: dict[str, list[ContextError]] = defaultdict(list)
    for t in targets:
        if t.error:
            ctx_errors[t.context].append(ContextError(t.context, t.error))
            continue
        try:
            clients[t.context] = t.make_client()
        except Exception as e:  # noqa: BLE001 - kubeconfig problems: bad user, missing cert file, exec plugin
            msg = scrub(" ".join(str(e).split()))[:300]
            ctx_errors[t.context].append(ContextError(t.context, f"cannot load kubeconfig context: "
                                                                 f"{type(e).__name__}: {msg}"))

    jobs = [(ctx, res) for ctx in clients for res in RESOURCES]
    results: dict[tuple[str, str], object] = {}

    def run(job):
        ctx, res = job
        try:
            return _list_resource(clients[ctx], res, ctx, page_size=page_size, timeout=timeout)
        except _ListFailed as e:
            return e

    try:
        if jobs:
            with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(jobs))),
                                    thread_name_prefix="rk-kube") as ex:
                for job, out in zip(jobs, ex.map(run, jobs)):
                    results[(job[0], job[1].plural)] = out
    finally:
        for c in clients.values():
            _close_client(c)

    for t in targets:
        ctx = t.context
        if ctx in clients:
            counts: dict[str, int] = {}
            seen_conn: set[str] = set()
            for res in RESOURCES:
                out = results[(ctx, res.plural)]
                if isinstance(out, _ListFailed):
                    if out.context_wide:   # unreachable server, TLS, rejected credentials
                        if out.reason in seen_conn:
                            continue   # the same unreachable server for every resource: say it once
                        seen_conn.add(out.reason)
                        ctx_errors[ctx].append(ContextError(ctx, out.reason, None, out.status))
                    else:
                        ctx_errors[ctx].append(ContextError(ctx, out.reason, res.display, out.status))
                    continue
                counts[res.plural] = out.count
                scan.refs.extend(out.refs)
                scan.invalid.extend(out.invalid)
            scan.objects[ctx] = counts
        if ctx_errors.get(ctx):
            for e in ctx_errors[ctx]:
                log.warning("kubernetes context %r could not be read: %s", ctx, e.reason)
            scan.errors.extend(ctx_errors[ctx])
        elif ctx in clients:
            scan.contexts_read.append(ctx)
            log.info("kubernetes context %r: %s", ctx,
                     ", ".join(f"{n} {r}" for r, n in scan.objects[ctx].items()))
    scan.duration_seconds = time.monotonic() - t0
    log.info("kubernetes in-use scan: %s", scan.summary())
    return scan


def _close_client(api_client) -> None:
    try:
        api_client.close()
    except Exception:  # noqa: BLE001
        pass
    try:
        api_client.rest_client.pool_manager.clear()
    except Exception:  # noqa: BLE001
        pass


# --------------------------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------------------------

_SNAPSHOT_SUFFIXES = (".json", ".yaml", ".yml")


def _read_docs(path: Path, substitutions: Mapping[str, str] | None) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KubeSnapshotError(f"cannot read Kubernetes snapshot {path}: {e.strerror or e}") from None
    for k, v in (substitutions or {}).items():
        text = text.replace(k, v)
    try:
        if path.suffix.lower() == ".json":
            return [json.loads(text)]
        import yaml
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except Exception as e:  # noqa: BLE001 - json.JSONDecodeError, yaml.YAMLError
        raise KubeSnapshotError(f"Kubernetes snapshot {path} is not valid {path.suffix.lstrip('.').upper()}: "
                                f"{str(e).splitlines()[0][:200]}") from None


def _add_doc(doc, path: Path, context: str, cols: dict[str, _Collector], counts: dict[str, dict[str, int]],
             where: str) -> None:
    """Feed one document (a *List, a kind: List, a single object, or {resource: List}) to collectors."""
    if not isinstance(doc, dict):
        raise KubeSnapshotError(f"Kubernetes snapshot {path}{where}: expected an object, got {type(doc).__name__}")
    kind = doc.get("kind")
    col = cols.setdefault(context, _Collector(context))
    cnt = counts.setdefault(context, {})

    def add(k, obj):
        if not isinstance(obj, dict):
            return
        res = _BY_KIND.get(k)
        if res is None and not ((obj.get("spec") or {}).get("template") or {}).get("spec"):
            return   # Services, ConfigMaps...: no images
        col.add_object(k, obj)
        key = res.plural if res else k.lower()
        cnt[key] = cnt.get(key, 0) + 1

    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        default_kind = kind[:-4] if kind != "List" else None
        for item in doc.get("items") or []:
            if isinstance(item, dict):
                add(item.get("kind") or default_kind, item)
        if _BY_LIST_KIND.get(kind) is not None:
            cnt.setdefault(_BY_LIST_KIND[kind].plural, 0)
        return
    if isinstance(kind, str) and "metadata" in doc:
        add(kind, doc)
        return
    # {resource plural or kind: List, ...}
    matched = False
    for key, val in doc.items():
        if isinstance(val, dict) and ("items" in val or "kind" in val):
            matched = True
            _add_doc(val, path, context, cols, counts, f"{where}[{key}]")
    if not matched:
        raise KubeSnapshotError(f"Kubernetes snapshot {path}{where}: not a list response, an object, "
                                f"or a mapping of list responses (keys: {', '.join(map(str, list(doc)[:8]))})")


def load_snapshot(path: "str | os.PathLike", *, context: str | None = None,
                  substitutions: Mapping[str, str] | None = None) -> InUseScan:
    """Build an :class:`InUseScan` from recorded API responses instead of a live cluster.

    ``path`` may be:

    * a JSON/YAML file holding one list response (``PodList``...), a ``kind: List`` of mixed
      objects (``kubectl get pods,deploy,sts,ds,rs,jobs,cronjobs -A -o json``), a mapping of
      such responses (``{"pods": {...PodList}, "deployments": {...}}``), a mapping
      ``{"contexts": {"prod": {...}, "staging": {...}}}``, or a saved scan (``to_json()``);
    * a directory of such files (one context), or of sub-directories (one context each, named
      after the sub-directory).

    ``substitutions`` replaces placeholders (e.g. ``{{REGISTRY}}``) in the raw text first.
    Objects are parsed by the same code as live list responses.
    """
    t0 = time.monotonic()
    p = Path(path).expanduser()
    if not p.exists():
        raise KubeSnapshotError(f"Kubernetes snapshot not found: {p}")
    cols: dict[str, _Collector] = {}
    counts: dict[str, dict[str, int]] = {}
    default_ctx = context or f"snapshot:{p.name}"

    def files_in(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in _SNAPSHOT_SUFFIXES)

    if p.is_dir():
        top = files_in(p)
        subdirs = sorted(d for d in p.iterdir() if d.is_dir() and files_in(d))
        if not top and not subdirs:
            raise KubeSnapshotError(f"Kubernetes snapshot directory {p} holds no .json/.yaml files")
        for f in top:
            for doc in _read_docs(f, substitutions):
                _add_doc(doc, f, default_ctx, cols, counts, "")
        for d in subdirs:
            for f in files_in(d):
                for doc in _read_docs(f, substitutions):
                    _add_doc(doc, f, d.name, cols, counts, "")
    else:
        docs = _read_docs(p, substitutions)
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("format") == SCAN_FORMAT:
            return InUseScan.from_dict(docs[0])
        for doc in docs:
            if isinstance(doc, dict) and isinstance(doc.get("contexts"), dict) and "kind" not in doc:
                for ctx, sub in doc["contexts"].items():
                    _add_doc(sub, p, str(ctx), cols, counts, f"[contexts][{ctx}]")
            else:
                _add_doc(doc, p, default_ctx, cols, counts, "")

    scan = InUseScan(source=f"snapshot:{p}")
    for ctx, col in cols.items():
        scan.refs.extend(col.refs)
        scan.invalid.extend(col.invalid)
        scan.contexts_read.append(ctx)
        scan.objects[ctx] = counts.get(ctx, {})
    scan.duration_seconds = time.monotonic() - t0
    return scan


def scan_from_config(kcfg) -> InUseScan:
    """Read in-use images as a ``config.KubernetesConfig`` says: its ``snapshot`` file when set,
    else the live contexts. Never raises for an unreadable cluster or snapshot: the failure is in
    ``.errors`` (the caller applies ``failClosed``)."""
    timeout = kcfg.timeout.total_seconds() if hasattr(kcfg.timeout, "total_seconds") else float(kcfg.timeout)
    if getattr(kcfg, "snapshot", None):
        try:
            return load_snapshot(kcfg.snapshot)
        except KubeSnapshotError as e:
            return InUseScan(errors=[ContextError(f"snapshot:{Path(kcfg.snapshot).name}", str(e))],
                             source=f"snapshot:{kcfg.snapshot}")
    return read_in_use(kcfg.kubeconfig, list(kcfg.contexts or []) or None, request_timeout=timeout)
