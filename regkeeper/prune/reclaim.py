"""Blob reclamation after manifest deletes (``reclaim.mode``: none | command | kubernetes-job).

A distribution registry frees blobs only when ``registry garbage-collect`` runs, and that must
not race a push: ``readOnly`` command -> remove the repositories a tier emptied -> garbage-collect
(a command here, or a Job: ``gcjob``) -> ``readWrite`` command, ALWAYS, also after a failure.
``garbage-collect --delete-untagged`` (``-m``) is refused wherever it appears (:func:`check_gc_argv`):
it deletes the untagged children of multi-arch indexes. Storage is measured before and after.
"""

import logging
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

from ..errors import RegistryError, RegkeeperError
from ..oci import RegistryClient
from ..storage import StorageReader
from .gcjob import load_job_template, run_gc_job

log = logging.getLogger(__name__)


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


def check_gc_argv(argv: list[str]) -> None:
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


def reclaim(reclaim_cfg, storage: StorageReader | None, *, remove_repositories: list[str] | None = None,
            client: RegistryClient | None = None, kube_cfg=None) -> ReclaimResult:
    """Run blob reclamation as configured (``none`` | ``command`` | ``kubernetes-job``):
    ``readOnly`` command -> remove emptied repositories -> garbage-collect (a command, or a Job
    created from ``jobTemplate``) -> ``readWrite`` command (always, also after a failure)."""
    res = ReclaimResult(mode=reclaim_cfg.mode)
    if reclaim_cfg.mode == "none":
        return res
    if reclaim_cfg.mode == "command":
        check_gc_argv(reclaim_cfg.garbage_collect)
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
        _remove_repositories(storage, remove_repositories or [], res)
        res.output += _garbage_collect(reclaim_cfg, kube_cfg, timeout)
        res.ran = True
    except RegkeeperError as e:
        res.error = str(e)
    finally:
        if read_only or (reclaim_cfg.read_write and reclaim_cfg.read_only):
            _read_write_again(reclaim_cfg, timeout, client, res)
    res.bytes_after = storage_bytes(storage)
    res.seconds = time.perf_counter() - t0
    return res


def _remove_repositories(storage: StorageReader | None, repos: list[str], res: ReclaimResult) -> None:
    """Remove the repositories a tier emptied (needs storage access; a failure is logged)."""
    for repo in repos:
        if storage is None:
            break
        try:
            storage.remove_repository(repo)
            res.repositories_removed.append(repo)
        except RegkeeperError as e:
            log.warning("not removing repository %s: %s", repo, e)


def _garbage_collect(reclaim_cfg, kube_cfg, timeout: float) -> str:
    if reclaim_cfg.mode == "command":
        return _run(reclaim_cfg.garbage_collect, timeout, "garbageCollect")
    return run_gc_job(reclaim_cfg, kube_cfg, timeout)


def _read_write_again(reclaim_cfg, timeout: float, client: RegistryClient | None,
                      res: ReclaimResult) -> None:
    try:
        res.output += _run(reclaim_cfg.read_write, timeout, "readWrite")
        if client is not None:
            _wait_ready(client, timeout=60)
    except RegkeeperError as e:
        res.error = (res.error + "; " if res.error else "") + f"{e} (THE REGISTRY MAY STILL BE READ-ONLY)"


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
