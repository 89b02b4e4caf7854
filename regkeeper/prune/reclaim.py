"""Blob reclamation after manifest deletes (``reclaim.mode``: none | command | kubernetes-job).

A distribution registry frees blobs only when ``registry garbage-collect`` runs, and that must
not race a push: ``readOnly`` command -> remove the repositories a tier emptied -> garbage-collect
(a command here, or a Job: ``gcjob``) -> ``readWrite`` command, ALWAYS, also after a failure.
The window is recorded durably before ``readOnly`` (``regkeeper.runstate.window``) under the
lease ``reclaim-<registry>``, and cleared only after ``readWrite`` succeeded: a run killed inside
it leaves a record the next run of any job closes (``regkeeper.runstate.recover``).
``garbage-collect --delete-untagged`` (``-m``) is refused wherever it appears (:func:`check_gc_argv`):
it deletes the untagged children of multi-arch indexes. Storage is measured before and after.
"""

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from ..errors import RegistryError, RegkeeperError
from ..oci import RegistryClient
from ..runstate import (
    RunState,
    Window,
    close_window,
    lease_name,
    read_window,
    save_window,
)
from ..runstate.command import run_step
from ..runstate.owner import pid_start
from ..storage import StorageReader
from ..util import utcnow
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
    notes: list[str] = field(default_factory=list)

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
            raise RegkeeperError(
                "reclaim: garbage-collect must not use --delete-untagged (-m): it "
                "deletes the untagged children of multi-arch indexes"
            )
        if w.endswith("garbage-collect"):
            after_gc = True


def reclaim(
    reclaim_cfg,
    storage: StorageReader | None,
    *,
    remove_repositories: list[str] | None = None,
    client: RegistryClient | None = None,
    kube_cfg=None,
    registry: str | None = None,
    state: RunState | None = None,
    in_window: Callable[[StorageReader | None], str] | None = None,
) -> ReclaimResult:
    """Run blob reclamation as configured (``none`` | ``command`` | ``kubernetes-job``):
    ``readOnly`` command -> remove emptied repositories -> garbage-collect (a command, or a Job
    created from ``jobTemplate``) -> ``readWrite`` command (always, also after a failure).

    With ``state`` (every flow passes it) the reclaim holds the lease ``reclaim-<registry>``
    throughout (a second reclaim of the same registry is skipped, and says who holds it) and
    the read-only window is recorded durably before ``readOnly`` and cleared only after
    ``readWrite`` succeeded, so a run killed inside the window is recovered by the next run.

    ``in_window``: a storage step run inside the window before garbage-collect (a proxy
    registry's eviction: ``regkeeper.proxycache``); its return text goes to the output, a
    RegkeeperError it raises stops the reclaim (garbage-collect does not run) and readWrite
    still runs."""
    res = ReclaimResult(mode=reclaim_cfg.mode)
    if reclaim_cfg.mode == "none":
        return res
    if reclaim_cfg.mode == "command":
        check_gc_argv(reclaim_cfg.garbage_collect)
    else:
        load_job_template(reclaim_cfg.job_template)  # refuse a bad template before read-only
    registry = registry or (client.name if client is not None else "registry")
    t0 = time.perf_counter()
    res.bytes_before = storage_bytes(storage)
    lease = state.lease(lease_name(registry)) if state is not None else None
    if lease is not None:
        got = lease.acquire()
        if not got.ok:
            who = got.holder.describe() if got.holder else "another run"
            res.error = (
                f"registry {registry}: garbage-collect skipped: another run is reclaiming "
                f"this registry ({who} holds lease {lease.name})"
            )
            res.seconds = time.perf_counter() - t0
            return res
        note = got.takeover_note(f"lease {lease.name}")
        if note is not None:  # it took over a lease a dead run left
            res.notes.append(note)
    with lease.held() if lease is not None else nullcontext():
        _in_window(
            reclaim_cfg,
            storage,
            remove_repositories or [],
            client,
            kube_cfg,
            _Guard(state, registry, lease),
            res,
            in_window,
        )
    res.bytes_after = storage_bytes(storage)
    res.seconds = time.perf_counter() - t0
    return res


class _Guard:
    """The read-only window record of this reclaim (nothing when there is no run state)."""

    def __init__(self, state: RunState | None, registry: str, lease):
        self.state, self.registry, self.lease = state, registry, lease
        self.window: Window | None = None

    def open(self, reclaim_cfg, timeout: float, res: ReclaimResult) -> None:
        """Record the window durably BEFORE ``readOnly`` runs."""
        if self.state is None:
            return
        old = read_window(self.state.root, self.registry)
        if old is not None:
            res.notes.append(
                f"registry {self.registry}: the read-only window left by "
                f"{old.describe()} is closed by this run's readWrite"
            )
        self.window = Window(
            registry=self.registry,
            owner=self.state.owner,
            started=utcnow().isoformat(timespec="seconds"),
            read_write=list(reclaim_cfg.read_write or []),
            timeout=timeout,
            lease=self.lease.name,
            lease_token=self.lease.token,
            mode=reclaim_cfg.mode,
        )
        save_window(self.state.root, self.window)

    def step(self, name: str, pid: int | None = None, gc_job: dict | None = None) -> None:
        if self.window is None or self.state is None:  # a window is opened only with run state
            return
        self.window.step, self.window.step_pid = name, pid
        self.window.step_pid_start = pid_start(pid) if pid else None
        if gc_job is not None:
            self.window.gc_job = gc_job
        save_window(self.state.root, self.window)

    def tracker(self, name: str):
        return (lambda pid: self.step(name, pid)) if self.window is not None else None

    def close(self) -> None:
        if self.window is not None and self.state is not None:
            close_window(self.state.root, self.window)
            self.window = None


def _in_window(
    reclaim_cfg, storage, repos: list[str], client, kube_cfg, guard: _Guard, res: ReclaimResult, step=None
) -> None:
    timeout = reclaim_cfg.timeout.total_seconds()
    read_only = False
    try:
        if reclaim_cfg.read_only:
            guard.open(reclaim_cfg, timeout, res)
            res.output += run_step(reclaim_cfg.read_only, timeout, "readOnly", guard.tracker("readOnly"))
            read_only = True
            if client is not None:
                wait_ready(client, timeout=60)
        _remove_repositories(storage, repos, res)
        if step is not None:
            guard.step("storage step")
            res.output += step(storage)
        res.output += _garbage_collect(reclaim_cfg, kube_cfg, timeout, guard)
        res.ran = True
    except RegkeeperError as e:
        res.error = str(e)
    finally:
        if read_only or (reclaim_cfg.read_write and reclaim_cfg.read_only):
            _read_write_again(reclaim_cfg, timeout, client, res, guard)


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


def _garbage_collect(reclaim_cfg, kube_cfg, timeout: float, guard: _Guard) -> str:
    if reclaim_cfg.mode == "command":
        return run_step(
            reclaim_cfg.garbage_collect, timeout, "garbageCollect", guard.tracker("garbageCollect")
        )
    guard.step("garbageCollect (kubernetes-job)")
    return run_gc_job(
        reclaim_cfg,
        kube_cfg,
        timeout,
        on_created=lambda ns, name: guard.step(
            "garbageCollect (kubernetes-job)", gc_job={"namespace": ns, "name": name}
        ),
    )


def _read_write_again(
    reclaim_cfg, timeout: float, client: RegistryClient | None, res: ReclaimResult, guard: _Guard
) -> None:
    """``readWrite``; the window record is cleared only once it succeeded. When it fails the
    record stays: the next run of any job runs it again."""
    try:
        res.output += run_step(reclaim_cfg.read_write, timeout, "readWrite", guard.tracker("readWrite"))
        guard.close()
        if client is not None:
            wait_ready(client, timeout=60)
    except RegkeeperError as e:
        kept = (
            " (the window stays recorded; the next run of any job runs readWrite again)"
            if guard.window is not None
            else ""
        )
        res.error = (
            res.error + "; " if res.error else ""
        ) + f"{e} (THE REGISTRY MAY STILL BE READ-ONLY){kept}"


def wait_ready(client: RegistryClient, timeout: float) -> None:
    """Wait until the registry answers ``GET /v2/`` (after a restart into or out of read-only)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except RegistryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
