"""Durable run state: what a run leaves behind when it dies, and how the next run recovers it.

A worker pod is evicted, a process is OOM-killed: nothing a run leaves behind may need a person.
So state that outlives a run is written durably (whole-file atomic write + fsync of the file and
its directory) BEFORE the step it guards, names its owner (run id, job, host, pid and the pid's
start time, when it started, its heartbeat and expiry), and is recovered by the next run of any
job, which says so in its report. Prefect-free; ``tasks/recovery.py`` is the Prefect side.

The state directory
-------------------
``stateDir`` in the config; else next to an explicit ``cacheDir`` (``<cacheDir>-state``); else
``$XDG_STATE_HOME/regkeeper`` (``~/.local/state/regkeeper``). Workers on several machines (or
several pods) that may run the same jobs MUST share it (a shared volume, e.g. NFS or a
ReadWriteMany PVC): a lease or window in a directory another worker cannot see protects
nothing. Layout::

    leases/<name>.json          a lease (lease.py): replicate-rule-<rule>, reclaim-<registry>
    readonly/<registry>.json    an open read-only window (window.py)
    recovered.jsonl             one line per window recovered (the metric counts them)

What is kept, and how it is recovered
-------------------------------------
- Leases (``lease.py``): taken atomically, renewed by a heartbeat thread every quarter of
  ``leaseTtl`` (default 2m), released on exit. Gone when expired, or when on its own host its
  pid is dead, a zombie, or another process now; the next run that needs it takes it over and
  reports whose it was. The replicate flow holds ``replicate-rule-<rule>`` for a rule's run; a
  reclaim holds ``reclaim-<registry>`` from before ``readOnly`` to after ``readWrite``.
- Read-only windows (``window.py``): recorded before ``readOnly`` with the ``readWrite`` argv
  to run, cleared after ``readWrite`` succeeded (kept when it failed). EVERY run of ANY job
  first runs ``recover.recover_windows``: a window whose owner is gone gets its ``readWrite``
  run and its record removed; the run's report says "recovered: registry X was left read-only
  by run R (pid P, started T); readWrite run", and the run logs it, pushes
  ``regkeeper_readonly_recovered_total`` and alerts through the capacity notify targets. A
  window whose owner is alive and holds its lease is left alone (a long garbage-collect is
  normal), and so is one whose garbage-collect child process, or kubernetes-job Job, still runs.
- What needs no record here: gc / expire deletes are idempotent (the next run plans again from
  what is there; a manifest already gone is "already gone"), and a backup writes its snapshot
  index last (a dead run leaves no snapshot; its in-flight marker goes stale on its own).
"""

from .lease import Acquired, Holder, Lease, lease_path, read_holder
from .owner import Owner
from .records import StateError
from .recover import Recovery, recover_windows
from .state import RunState
from .window import (
    Window,
    WindowStatus,
    close_window,
    judge,
    lease_name,
    list_windows,
    read_window,
    save_window,
    window_path,
    window_status,
)

__all__ = [
    "Acquired",
    "Holder",
    "Lease",
    "Owner",
    "Recovery",
    "RunState",
    "StateError",
    "Window",
    "WindowStatus",
    "close_window",
    "judge",
    "lease_name",
    "lease_path",
    "list_windows",
    "read_holder",
    "read_window",
    "recover_windows",
    "save_window",
    "window_path",
    "window_status",
]
