"""Workloads: which Kubernetes kinds are read and which pod-spec fields hold images.

:data:`RESOURCES` is every list call the reader makes (and what the ClusterRole in
deployments/ must grant). :func:`extract_images` walks one API object: for Pods the
``containers``, ``initContainers`` and ``ephemeralContainers`` of the spec and the ``imageID`` of
their statuses; for Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs (and any other
kind with one) the pod template ``spec.template.spec``; for CronJobs
``spec.jobTemplate.spec.template.spec``. It type-checks every field it walks: an object it
cannot read raises :class:`MalformedObjectError` naming the field path and the JSON types
(``spec.template.spec.containers[0] is a string, expected an object``), never a bare
``AttributeError``.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import MalformedObjectError


@dataclass(frozen=True, slots=True)
class _Resource:
    """One kind the reader lists: its API group, the client class and method, the REST path."""

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
    _Resource(
        "deployments",
        "Deployment",
        "apps",
        "AppsV1Api",
        "list_deployment_for_all_namespaces",
        "/apis/apps/v1/deployments",
    ),
    _Resource(
        "statefulsets",
        "StatefulSet",
        "apps",
        "AppsV1Api",
        "list_stateful_set_for_all_namespaces",
        "/apis/apps/v1/statefulsets",
    ),
    _Resource(
        "daemonsets",
        "DaemonSet",
        "apps",
        "AppsV1Api",
        "list_daemon_set_for_all_namespaces",
        "/apis/apps/v1/daemonsets",
    ),
    _Resource(
        "replicasets",
        "ReplicaSet",
        "apps",
        "AppsV1Api",
        "list_replica_set_for_all_namespaces",
        "/apis/apps/v1/replicasets",
    ),
    _Resource("jobs", "Job", "batch", "BatchV1Api", "list_job_for_all_namespaces", "/apis/batch/v1/jobs"),
    _Resource(
        "cronjobs",
        "CronJob",
        "batch",
        "BatchV1Api",
        "list_cron_job_for_all_namespaces",
        "/apis/batch/v1/cronjobs",
    ),
)
_BY_KIND = {r.kind: r for r in RESOURCES}
_BY_LIST_KIND = {r.kind + "List": r for r in RESOURCES}

# where the pod template is, by kind (None: every other kind)
_TEMPLATE_PATH: dict[str | None, tuple[str, ...]] = {
    "CronJob": ("jobTemplate", "spec", "template", "spec"),
    None: ("template", "spec"),
}

_CONTAINER_KEYS = (
    ("containers", "containerStatuses"),
    ("initContainers", "initContainerStatuses"),
    ("ephemeralContainers", "ephemeralContainerStatuses"),
)


def extract_images(kind: str, obj: Mapping) -> Iterator[tuple[str, str, str]]:
    """Yield ``(image string, container name, field path)`` for one API object.

    Pods: spec containers of all three kinds and status ``imageID``s. Workloads: the pod
    template (``spec.template.spec``; ``spec.jobTemplate.spec.template.spec`` for CronJobs).
    Any other kind with a ``spec.template.spec`` pod template is read the same way. Every field
    walked is type-checked (null counts as absent): one of the wrong JSON type raises
    :class:`MalformedObjectError` naming its path.
    """
    obj = _as_object(obj, "the object")
    spec = _as_object(obj.get("spec"), "spec")
    if kind == "Pod":
        yield from _pod_spec_images(spec, "spec")
        yield from _status_image_ids(_as_object(obj.get("status"), "status"))
        return
    tspec, prefix = spec, "spec"
    for key in _TEMPLATE_PATH.get(kind, _TEMPLATE_PATH[None]):
        prefix += "." + key
        tspec = _as_object(tspec.get(key), prefix)
    if tspec:
        yield from _pod_spec_images(tspec, prefix)


def _pod_spec_images(spec: Mapping, prefix: str) -> Iterator[tuple[str, str, str]]:
    for key, _ in _CONTAINER_KEYS:
        yield from _container_values(spec, prefix, key, "image")


def _status_image_ids(status: Mapping) -> Iterator[tuple[str, str, str]]:
    for _, skey in _CONTAINER_KEYS:
        yield from _container_values(status, "status", skey, "imageID")


def _container_values(parent: Mapping, prefix: str, key: str, leaf: str) -> Iterator[tuple[str, str, str]]:
    """``(value of leaf, container name, field path)`` for each element of the list ``parent[key]``.

    The hot loop of reading 10k pods: the exact JSON types are tested first, the paths of a
    problem are built only when there is one.
    """
    items = parent.get(key)
    if type(items) is not list:
        items = _as_list(items, f"{prefix}.{key}")
    for i, c in enumerate(items):
        if type(c) is not dict:
            c = _as_item(c, f"{prefix}.{key}[{i}]")
        value = c.get(leaf)
        if type(value) is not str:
            value = _as_string(value, f"{prefix}.{key}[{i}].{leaf}")
        if not value:
            continue
        name = c.get("name")
        if type(name) is not str:
            name = _as_string(name, f"{prefix}.{key}[{i}].name")
        yield value, name, f"{prefix}.{key}[{i}].{leaf}"


# -- type checks: what the API schema promises, checked because snapshots and proxies can lie ----


def json_type(value: object) -> str:
    """``an object``, ``a list``, ``a string``, ``a number``, ``a boolean``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


_EMPTY: Mapping = MappingProxyType({})


def _as_object(value: object, path: str) -> Mapping:
    if type(value) is dict:  # what the JSON parsers build: the fast path
        return value
    if value is None:
        return _EMPTY
    if isinstance(value, Mapping):
        return value
    raise MalformedObjectError(path, json_type(value), "an object")


def _as_item(value: object, path: str) -> Mapping:
    """A list element must be an object: null is not an absent field there."""
    if isinstance(value, Mapping):
        return value
    raise MalformedObjectError(path, json_type(value), "an object")


def _as_list(value: object, path: str) -> "list | tuple":
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return value
    raise MalformedObjectError(path, json_type(value), "a list")


def _as_string(value: object, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise MalformedObjectError(path, json_type(value), "a string")
