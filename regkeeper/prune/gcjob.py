"""Reclaim mode ``kubernetes-job``: registry garbage-collect run as a Kubernetes Job created from
``reclaim.jobTemplate`` (a batch/v1 Job manifest) through the official kubernetes client, and
waited for. The template's commands pass the same ``--delete-untagged`` refusal as the command
mode (``reclaim.check_gc_argv``); every API call has its own timeout. The Job's name goes into the
read-only window record as soon as it exists (``on_created``): a run killed while the Job runs
leaves the window to :func:`job_active`, and recovery switches the registry back to read-write
only once the Job has finished (``regkeeper.runstate.recover``).
"""

import os
import time
from collections.abc import Callable

from ..errors import RegkeeperError
from ..util import scrub


def _job_commands(manifest: dict) -> list[list[str]]:
    spec = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
    out = []
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        out.append([str(x) for x in (c.get("command") or []) + (c.get("args") or [])])
    return out


def load_job_template(path: str) -> dict:
    import yaml

    from .reclaim import check_gc_argv  # reclaim drives this mode: imported where used

    try:
        manifest = yaml.safe_load(open(os.path.expanduser(path)).read())
    except OSError as e:
        raise RegkeeperError(f"reclaim.jobTemplate {path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise RegkeeperError(f"reclaim.jobTemplate {path}: not valid YAML ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "Job":
        raise RegkeeperError(f"reclaim.jobTemplate {path}: must be a batch/v1 Job manifest")
    cmds = _job_commands(manifest)
    if not cmds:
        raise RegkeeperError(f"reclaim.jobTemplate {path}: the Job has no containers")
    for argv in cmds:
        check_gc_argv(argv)
    return manifest


def run_gc_job(
    reclaim_cfg,
    kube_cfg,
    timeout: float,
    poll: float = 2.0,
    on_created: Callable[[str, str], None] | None = None,
) -> str:
    """Create the garbage-collect Job from ``reclaim.jobTemplate`` and wait for it (official
    kubernetes client; the kubeconfig and first context of the ``kubernetes`` section, else the
    default kubeconfig / in-cluster service account). Every API call has its own timeout.
    ``on_created(namespace, name)`` is called once the Job exists."""
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    manifest = load_job_template(reclaim_cfg.job_template)
    ns = reclaim_cfg.namespace or (manifest.get("metadata") or {}).get("namespace") or "default"
    manifest.setdefault("metadata", {}).pop("resourceVersion", None)
    if not manifest["metadata"].get("name"):
        manifest["metadata"].setdefault("generateName", "registry-garbage-collect-")
    api_client = _api_client(kube_cfg)
    batch = kclient.BatchV1Api(api_client)
    try:
        job = batch.create_namespaced_job(ns, manifest, _request_timeout=_RT)
        if on_created is not None:
            on_created(ns, job.metadata.name)
        return _wait_for_job(batch, ns, job.metadata.name, timeout, poll)
    except ApiException as e:
        raise RegkeeperError(
            f"reclaim kubernetes-job in namespace {ns}: HTTP {e.status} {e.reason}"
        ) from None
    finally:
        api_client.close()


_RT = (5, 30)  # (connect, read) timeout of every API call


def job_active(kube_cfg, namespace: str, name: str) -> bool:
    """True while the garbage-collect Job ``namespace/name`` has neither succeeded nor failed
    for good; False once it finished or no longer exists. Raises RegkeeperError when the API
    cannot be read (the caller then leaves the registry read-only, and says why)."""
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    api_client = _api_client(kube_cfg)
    try:
        job = kclient.BatchV1Api(api_client).read_namespaced_job_status(name, namespace, _request_timeout=_RT)
    except ApiException as e:
        if e.status == 404:
            return False
        raise RegkeeperError(f"reclaim job {namespace}/{name}: HTTP {e.status} {e.reason}") from None
    except Exception as e:  # noqa: BLE001 - connection errors of the kubernetes client
        raise RegkeeperError(
            f"reclaim job {namespace}/{name}: cannot read it ({type(e).__name__}: {scrub(str(e))[:200]})"
        ) from None
    finally:
        api_client.close()
    st = job.status
    if st is not None and (st.succeeded or 0) >= 1:
        return False
    limit = job.spec.backoff_limit if job.spec and job.spec.backoff_limit is not None else 6
    return not (st is not None and (st.failed or 0) > limit)


def _api_client(kube_cfg):
    """The kubeconfig (and first context) of the ``kubernetes`` section, else the default
    kubeconfig, else the in-cluster service account."""
    from kubernetes import client as kclient
    from kubernetes import config as kconfig
    from kubernetes.config.config_exception import ConfigException

    ctx = kube_cfg.contexts[0] if kube_cfg is not None and kube_cfg.contexts else None
    try:
        return kconfig.new_client_from_config(
            config_file=kube_cfg.kubeconfig if kube_cfg is not None else None,
            context=ctx,
            persist_config=False,
        )
    except (ConfigException, OSError, TypeError):
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise RegkeeperError(
                "reclaim kubernetes-job: no kubeconfig and not running in a cluster"
            ) from None
        kconfig.load_incluster_config()
        return kclient.ApiClient()


def _wait_for_job(batch, ns: str, name: str, timeout: float, poll: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        job = batch.read_namespaced_job_status(name, ns, _request_timeout=_RT)
        st = job.status
        if st is not None and (st.succeeded or 0) >= 1:
            return f"job {ns}/{name} succeeded"
        limit = job.spec.backoff_limit if job.spec and job.spec.backoff_limit is not None else 6
        if st is not None and (st.failed or 0) > limit:
            raise RegkeeperError(
                f"reclaim job {ns}/{name} failed ({st.failed} failed pods): see "
                f"`kubectl -n {ns} logs job/{name}`"
            )
        if time.monotonic() > deadline:
            raise RegkeeperError(
                f"reclaim job {ns}/{name} did not finish within {timeout:.0f}s "
                "(left running; the registry is switched back to read-write)"
            )
        time.sleep(poll)
