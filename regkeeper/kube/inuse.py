"""The in-use rule: which references a scan found, where, and what they protect.

:class:`InUseScan` holds every reference found (with its :class:`InUseSource`: context, object,
container, field), the contexts read and those that failed (:class:`ContextError`), and saves
to / loads from JSON. :meth:`InUseScan.for_registry` keeps the references to one registry
(matched by host, case-insensitively, plus the aliases the caller passes) as a
:class:`RegistryUsage`, which answers the protection question: a digest in use protects every
tag on it; a tag in use protects its current digest. :meth:`InUseScan.raise_if_incomplete` is
the fail-closed refusal naming every context that could not be read.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import KubeReadError
from .refs import ImageRef, normalize_host, parse_image_ref

SCAN_FORMAT = "regkeeper.kube.InUseScan/v1"


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
        return (
            f"{self.context}:{self.namespace}/{self.kind}/{self.name} container {self.container!r} "
            f"({self.field})"
        )

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "container": self.container,
            "field": self.field,
        }


@dataclass(frozen=True, slots=True)
class ContextError:
    """A context (or one resource of it) that could not be read."""

    context: str
    reason: str
    resource: str | None = None  # "pods", "deployments.apps", ... when one list call failed
    status: int | None = None  # HTTP status when the API server answered

    def __str__(self) -> str:
        return f"context {self.context!r}: {self.reason}"

    def to_dict(self) -> dict:
        return {
            "context": self.context,
            "reason": self.reason,
            "resource": self.resource,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class InvalidRef:
    """A string in an image field that is not a valid reference (the kubelet cannot pull it either)."""

    value: str
    source: InUseSource
    reason: str


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

    def is_protected(
        self, repo: str, tag: "str | Iterable[str] | None", digest: str | None
    ) -> list[InUseSource]:
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
        return (
            f"RegistryUsage(hosts={sorted(self.hosts)}, refs={len(self.refs)}, "
            f"repositories={len(self.repositories())})"
        )


@dataclass
class InUseScan:
    """Every image reference found, where it was found, and which contexts failed."""

    refs: list[tuple[ImageRef, InUseSource]] = field(default_factory=list)
    errors: list[ContextError] = field(default_factory=list)
    contexts_read: list[str] = field(default_factory=list)
    invalid: list[InvalidRef] = field(default_factory=list)
    objects: dict[str, dict[str, int]] = field(default_factory=dict)  # context -> resource -> count
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
            raise KubeReadError(
                self.failure_message() + " (kubernetes.failClosed is on: nothing is deleted)", self.errors
            )

    def summary(self) -> str:
        per = ", ".join(
            f"{ctx}: " + " ".join(f"{n} {r}" for r, n in counts.items())
            for ctx, counts in self.objects.items()
        )
        s = (
            f"{_n(len(self.refs), 'image reference')} ({len(self.images())} distinct) from "
            f"{_n(len(self.contexts_read), 'context')} in {self.duration_seconds:.2f}s"
        )
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
            raise ValueError(
                f"not a regkeeper in-use scan (format {d.get('format')!r}, expected {SCAN_FORMAT!r})"
            )

        def src(x):
            return InUseSource(
                context=x["context"],
                namespace=x.get("namespace", ""),
                kind=x["kind"],
                name=x["name"],
                container=x.get("container", ""),
                field=x.get("field", ""),
            )

        return cls(
            refs=[(parse_image_ref(x["ref"]), src(x)) for x in d.get("refs") or []],
            errors=[
                ContextError(
                    context=e["context"],
                    reason=e["reason"],
                    resource=e.get("resource"),
                    status=e.get("status"),
                )
                for e in d.get("errors") or []
            ],
            contexts_read=list(d.get("contextsRead") or []),
            invalid=[
                InvalidRef(value=x["value"], reason=x.get("reason", ""), source=src(x))
                for x in d.get("invalid") or []
            ],
            objects={k: dict(v) for k, v in (d.get("objects") or {}).items()},
            source=d.get("source", "kubernetes"),
            duration_seconds=float(d.get("durationSeconds") or 0.0),
        )

    @classmethod
    def from_json(cls, data: "str | bytes | Mapping") -> "InUseScan":
        if isinstance(data, Mapping):
            return cls.from_dict(data)
        return cls.from_dict(json.loads(data))


def _n(n: int, one: str) -> str:
    return f"{n} {one}{'' if n == 1 else 's'}"
