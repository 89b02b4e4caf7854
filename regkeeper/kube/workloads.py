"""Workloads: which Kubernetes kinds are read and which pod-spec fields hold images.

:data:`RESOURCES` is every list call the reader makes (and what the ClusterRole in
deployments/ must grant). :func:`extract_images` walks one API object: for Pods the
``containers``, ``initContainers`` and ``ephemeralContainers`` of the spec and the ``imageID`` of
their statuses; for Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs (and any other
kind with one) the pod template ``spec.template.spec``; for CronJobs
``spec.jobTemplate.spec.template.spec``.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


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
