"""The one delete path: every job that deletes (gc, expire, replicate's deleteExtraneous) uses it.

- ``delete_manifests``: DELETE by digest with bounded concurrency, idempotent (404 = done),
  in a safe order: signatures/referrers first, then indexes, then images — so a run cut short
  never leaves an index pointing at deleted children or a signature without its subject.
  A 405 (deletes disabled) stops everything at once and says so.
- ``reclaim``: blob reclamation for a distribution registry: read-only, ``garbage-collect``
  (never ``--delete-untagged``: it deletes the children of multi-arch indexes), remove emptied
  repositories, read-write again (always), storage measured before and after.
- ``verify_kept``: every kept tag still resolves to its digest and every blob answers HEAD 200.
"""

import logging
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

from ..errors import DeletesDisabledError, RegistryError, RegkeeperError
from ..models import Inventory, signature_subject
from ..oci import RegistryClient
from ..storage import StorageReader
from ..util import bounded_map

log = logging.getLogger(__name__)


@dataclass
class DeleteResult:
    deleted: list[tuple[str, str]] = field(default_factory=list)        # (repo, digest)
    already_gone: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)    # (repo, digest, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)        # (repo, why nothing deleted)
    stopped: str | None = None                                          # why the run stopped early

    def merge(self, other: "DeleteResult") -> None:
        self.deleted += other.deleted
        self.already_gone += other.already_gone
        self.failed += other.failed
        self.skipped += other.skipped
        self.stopped = self.stopped or other.stopped


def delete_levels(inv: Inventory | None, items: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Order deletes so that whatever references a manifest goes before it: an index before its
    children, a referrer (OCI ``subject``) or cosign-tagged signature before its subject, at any
    depth. Level 0 first; items of one level are deleted concurrently. A run stopped half-way
    therefore never leaves an index pointing at a deleted child or a signature without its
    subject."""
    todo = set(items)
    refs: dict[tuple[str, str], set[tuple[str, str]]] = {}   # referenced -> referencing (in todo)
    if inv is not None:
        for repo, digest in todo:
            r = inv.repositories.get(repo)
            if r is None:
                continue
            info = r.manifests.get(digest)
            targets = set()
            if info is not None:
                targets.update(c.digest for c in info.children)
                if info.subject:
                    targets.add(info.subject)
            for t, d in r.tags.items():
                sub = signature_subject(t) if d == digest else None
                if sub:
                    targets.add(sub[0])
            for tgt in targets:
                if (repo, tgt) in todo and tgt != digest:
                    refs.setdefault((repo, tgt), set()).add((repo, digest))
    level: dict[tuple[str, str], int] = {}

    def depth(it, trail=()):
        if it in level:
            return level[it]
        if it in trail:          # a reference cycle cannot be ordered: delete together
            return 0
        parents = refs.get(it, ())
        level[it] = 1 + max((depth(p, trail + (it,)) for p in parents), default=-1)
        return level[it]

    for it in todo:
        depth(it)
    return level


def changed_since_plan(client: RegistryClient, repo: str, digests: set[str],
                       planned_tag_deletes: set[str], max_workers: int) -> str | None:
    """Re-read a repository's tags just before deleting: DELETE by digest removes every tag on
    the digest, so a tag pushed (or moved back) onto a planned digest after the scan would go
    too. Returns why the repository must be left alone this run, or None."""
    tags = [t for t in client.list_tags(repo) if t not in planned_tag_deletes]
    for tag, head, err in bounded_map(lambda t: client.head_manifest(repo, t), tags, max_workers):
        if err is not None:
            return f"tag {tag} could not be re-checked ({err})"
        if head is not None and head.digest in digests:
            return (f"tag {tag} now points to {head.digest[:19]}…, planned for deletion (pushed "
                    "after the scan): nothing deleted in this repository; the next run re-plans")
    return None


def delete_manifests(client: RegistryClient, items: list[tuple[str, str]], *,
                     inventory: Inventory | None = None, max_workers: int | None = None,
                     recheck: dict[str, set[str]] | None = None) -> DeleteResult:
    """Delete (repo, digest) pairs. Transient failures are retried by the client; what still
    fails is listed and does not stop the others. 405 stops the whole run."""
    res = DeleteResult()
    workers = max_workers or client.concurrency
    if recheck is not None:
        by_repo: dict[str, set[str]] = {}
        for repo, d in items:
            by_repo.setdefault(repo, set()).add(d)
        for repo in sorted(by_repo):
            try:
                why = changed_since_plan(client, repo, by_repo[repo], recheck.get(repo, set()), workers)
            except RegistryError as e:
                why = f"tags could not be re-checked ({e})"
            if why:
                res.skipped.append((repo, why))
        skip = {repo for repo, _ in res.skipped}
        items = [it for it in items if it[0] not in skip]
    phases: dict[int, list[tuple[str, str]]] = {}
    levels = delete_levels(inventory, items)
    for it in items:
        phases.setdefault(levels.get(it, 0), []).append(it)
    for ph in sorted(phases):
        if res.stopped:
            res.failed += [(r, d, f"not attempted: {res.stopped}") for r, d in phases[ph]]
            continue

        def one(item):
            repo, digest = item
            if res.stopped:
                raise RegkeeperError(f"not attempted: {res.stopped}")
            return client.delete_manifest(repo, digest)

        for (repo, digest), ok, err in bounded_map(one, phases[ph], max_workers or client.concurrency):
            if err is None:
                (res.deleted if ok else res.already_gone).append((repo, digest))
            elif isinstance(err, DeletesDisabledError):
                res.stopped = str(err)
                res.failed.append((repo, digest, str(err)))
            else:
                res.failed.append((repo, digest, str(err)))
    return res


# --------------------------------------------------------------------------- reclamation


@dataclass
class ReclaimResult:
    mode: str
    ran: bool = False
    bytes_before: int | None = None
    bytes_after: int | None = None
    seconds: float = 0.0
    repositories_removed: list[str] = field(default_factory=list)
    output: str = ""
    error: str | None = None

    @property
    def bytes_freed(self) -> int | None:
        if self.bytes_before is None or self.bytes_after is None:
            return None
        return self.bytes_before - self.bytes_after


def storage_bytes(storage: StorageReader | None) -> int | None:
    """Physical bytes in the registry's storage (file bytes, like the reclaim preview)."""
    from ..capacity import storage_usage
    usage = storage_usage(storage)
    return usage.bytes_used if usage is not None else None


def _check_gc_argv(argv: list[str]) -> None:
    """Refuse ``garbage-collect --delete-untagged`` (``-m``): it deletes the untagged children of
    multi-arch indexes. Checked in every argv and in shell strings (``sh -c "..."``)."""
    words = [w for a in argv for w in str(a).split()]
    after_gc = False
    for w in words:
        if w.startswith("--delete-untagged") or (after_gc and (w == "-m" or w.startswith("-m="))):
            raise RegkeeperError("reclaim: garbage-collect must not use --delete-untagged (-m): it "
                                 "deletes the untagged children of multi-arch indexes")
        if w.endswith("garbage-collect"):
            after_gc = True


def _run(argv: list[str], timeout: float, what: str) -> str:
    log.info("reclaim: %s: %s", what, shlex.join(argv))
    env = dict(os.environ)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise RegkeeperError(f"reclaim.{what}: command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise RegkeeperError(f"reclaim.{what}: timed out after {timeout:.0f}s") from None
    out = (p.stdout or "") + (p.stderr or "")
    if p.returncode != 0:
        raise RegkeeperError(f"reclaim.{what} exited {p.returncode}: {out.strip()[-500:]}")
    return out


def _job_commands(manifest: dict) -> list[list[str]]:
    spec = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
    out = []
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        out.append([str(x) for x in (c.get("command") or []) + (c.get("args") or [])])
    return out


def load_job_template(path: str) -> dict:
    import yaml
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
        _check_gc_argv(argv)
    return manifest


def run_gc_job(reclaim_cfg, kube_cfg, timeout: float, poll: float = 2.0) -> str:
    """Create the garbage-collect Job from ``reclaim.jobTemplate`` and wait for it (official
    kubernetes client; the kubeconfig and first context of the ``kubernetes`` section, else the
    default kubeconfig / in-cluster service account). Every API call has its own timeout."""
    from kubernetes import client as kclient
    from kubernetes import config as kconfig
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    manifest = load_job_template(reclaim_cfg.job_template)
    ns = reclaim_cfg.namespace or (manifest.get("metadata") or {}).get("namespace") or "default"
    manifest.setdefault("metadata", {}).pop("resourceVersion", None)
    if not manifest["metadata"].get("name"):
        manifest["metadata"].setdefault("generateName", "registry-garbage-collect-")
    ctx = kube_cfg.contexts[0] if kube_cfg is not None and kube_cfg.contexts else None
    try:
        api_client = kconfig.new_client_from_config(
            config_file=kube_cfg.kubeconfig if kube_cfg is not None else None, context=ctx,
            persist_config=False)
    except (ConfigException, OSError, TypeError):
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise RegkeeperError("reclaim kubernetes-job: no kubeconfig and not running in a cluster") from None
        kconfig.load_incluster_config()
        api_client = kclient.ApiClient()
    batch = kclient.BatchV1Api(api_client)
    rt = (5, 30)
    try:
        job = batch.create_namespaced_job(ns, manifest, _request_timeout=rt)
        name = job.metadata.name
        deadline = time.monotonic() + timeout
        while True:
            job = batch.read_namespaced_job_status(name, ns, _request_timeout=rt)
            st = job.status
            if st is not None and (st.succeeded or 0) >= 1:
                return f"job {ns}/{name} succeeded"
            limit = job.spec.backoff_limit if job.spec and job.spec.backoff_limit is not None else 6
            if st is not None and (st.failed or 0) > limit:
                raise RegkeeperError(f"reclaim job {ns}/{name} failed ({st.failed} failed pods): see "
                                     f"`kubectl -n {ns} logs job/{name}`")
            if time.monotonic() > deadline:
                raise RegkeeperError(f"reclaim job {ns}/{name} did not finish within {timeout:.0f}s "
                                     "(left running; the registry is switched back to read-write)")
            time.sleep(poll)
    except ApiException as e:
        raise RegkeeperError(f"reclaim kubernetes-job in namespace {ns}: HTTP {e.status} {e.reason}") from None
    finally:
        api_client.close()


def reclaim(reclaim_cfg, storage: StorageReader | None, *, remove_repositories: list[str] | None = None,
            client: RegistryClient | None = None, kube_cfg=None) -> ReclaimResult:
    """Run blob reclamation as configured (``none`` | ``command`` | ``kubernetes-job``):
    ``readOnly`` command -> remove emptied repositories -> garbage-collect (a command, or a Job
    created from ``jobTemplate``) -> ``readWrite`` command (always, also after a failure)."""
    res = ReclaimResult(mode=reclaim_cfg.mode)
    if reclaim_cfg.mode == "none":
        return res
    if reclaim_cfg.mode == "command":
        _check_gc_argv(reclaim_cfg.garbage_collect)
    else:
        load_job_template(reclaim_cfg.job_template)   # refuse a bad template before read-only
    timeout = reclaim_cfg.timeout.total_seconds()
    t0 = time.perf_counter()
    res.bytes_before = storage_bytes(storage)
    read_only = False
    try:
        if reclaim_cfg.read_only:
            res.output += _run(reclaim_cfg.read_only, timeout, "readOnly")
            read_only = True
            if client is not None:
                _wait_ready(client, timeout=60)
        for repo in remove_repositories or []:
            if storage is None:
                break
            try:
                storage.remove_repository(repo)
                res.repositories_removed.append(repo)
            except RegkeeperError as e:
                log.warning("not removing repository %s: %s", repo, e)
        if reclaim_cfg.mode == "command":
            res.output += _run(reclaim_cfg.garbage_collect, timeout, "garbageCollect")
        else:
            res.output += run_gc_job(reclaim_cfg, kube_cfg, timeout)
        res.ran = True
    except RegkeeperError as e:
        res.error = str(e)
    finally:
        if read_only or (reclaim_cfg.read_write and reclaim_cfg.read_only):
            try:
                res.output += _run(reclaim_cfg.read_write, timeout, "readWrite")
                if client is not None:
                    _wait_ready(client, timeout=60)
            except RegkeeperError as e:
                res.error = (res.error + "; " if res.error else "") + f"{e} (THE REGISTRY MAY STILL BE READ-ONLY)"
    res.bytes_after = storage_bytes(storage)
    res.seconds = time.perf_counter() - t0
    return res


def _wait_ready(client: RegistryClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except RegistryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    tags_checked: int = 0
    blobs_checked: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)   # (repo, tag, problem)


def verify_kept(client: RegistryClient, inv: Inventory, kept: list[tuple[str, str, str]],
                max_workers: int | None = None) -> VerifyResult:
    """For each kept (repo, tag, digest): the tag resolves to that digest, and every manifest
    it needs (index children) and every blob answers HEAD 200."""
    res = VerifyResult()
    blob_checks: set[tuple[str, str]] = set()

    def check_tag(item):
        repo, tag, digest = item
        head = client.head_manifest(repo, tag)
        if head is None:
            return f"tag missing (expected {digest})"
        if head.digest != digest:
            return f"tag now points to {head.digest}, expected {digest}"
        return None

    for (repo, tag, digest), problem, err in bounded_map(check_tag, kept, max_workers or client.concurrency):
        res.tags_checked += 1
        if err is not None:
            res.problems.append((repo, tag, f"check failed: {err}"))
        elif problem:
            res.problems.append((repo, tag, problem))
        r = inv.repositories.get(repo)
        if r is None:
            continue
        for info in r.closure([digest]):
            blob_checks.update((repo, b.digest) for b in info.blobs)

    def check_blob(item):
        repo, digest = item
        return client.head_blob(repo, digest)

    for (repo, digest), size, err in bounded_map(check_blob, sorted(blob_checks), max_workers or client.concurrency):
        res.blobs_checked += 1
        if err is not None or size is None:
            res.problems.append((repo, "", f"blob {digest} unreadable: {err or 'HEAD 404'}"))
    return res
