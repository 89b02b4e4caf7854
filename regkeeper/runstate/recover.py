"""Recovery, run first by every run of every job: close the read-only windows that runs which are
gone left open.

For each window record (``window``): a window still owned by a live run (its reclaim lease held
by a live owner, or its garbage-collect child still running on this host) is left alone: a long
garbage-collect is normal. Otherwise this run takes the window's reclaim lease (taking over the
dead run's), checks the record is still the same window, waits for nothing but a kubernetes-job
garbage-collect Job that is still running (then the window stays, and says why), runs
``readWrite`` (the registry's ``reclaim.readWrite`` as configured now, so a fixed command
applies; the argv recorded in the window when the registry is no longer configured), removes
the record and counts the recovery. When ``readWrite``
fails the record stays, and the next run tries again. The caller reports, logs, alerts and
pushes the metric (``tasks/recovery.py``).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RegkeeperError
from ..util import utcnow
from .command import run_step
from .state import RunState
from .window import Window, close_window, judge, list_windows, read_window

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    registry: str
    window: Window
    outcome: str  # recovered | failed | live | waiting
    detail: str  # recovered: why the owner was gone; else why it stayed
    at: str = ""

    @property
    def acted(self) -> bool:
        return self.outcome in ("recovered", "failed")

    def note(self) -> str:
        w, r = self.window, self.registry
        if self.outcome == "recovered":
            return (
                f"recovered: registry {r} was left read-only by {w.describe()}; readWrite run ({self.detail})"
            )
        if self.outcome == "failed":
            return (
                f"registry {r} was left read-only by {w.describe()}; readWrite FAILED: "
                f"{self.detail} (the registry is still read-only; the next run tries again)"
            )
        return (
            f"registry {r} is {'' if self.outcome == 'live' else 'still '}read-only for "
            f"garbage-collect by {w.describe()}: left alone ({self.detail})"
        )


def recover_windows(
    rs: RunState, *, config=None, ready: Callable[[str], None] | None = None
) -> list[Recovery]:
    """Close every read-only window whose owner is gone; report the others. ``config`` (the
    loaded Config) gives the current ``readWrite`` command and the ``kubernetes`` section;
    ``ready(registry)`` (optional) waits until the registry answers again after ``readWrite``."""
    out = []
    for w in list_windows(rs.root):
        st = judge(rs.root, w)
        if st.live:
            out.append(Recovery(w.registry, w, "live", st.why, utcnow().isoformat()))
            continue
        rec = _close_stale(rs, w, st.why, config, ready)
        if rec is not None:
            out.append(rec)
    return out


def _read_write_of(config, w: Window) -> tuple[list[str], float]:
    """The registry's configured ``readWrite`` (and timeout), else the window's recorded one."""
    try:
        rc = config.registry(w.registry).reclaim if config is not None else None
    except RegkeeperError:
        rc = None
    if rc is not None and rc.read_write:
        return list(rc.read_write), rc.timeout.total_seconds()
    return w.read_write, w.timeout


def _close_stale(rs: RunState, w: Window, why: str, config, ready) -> Recovery | None:
    lease = rs.lease(w.lease or f"reclaim-{w.registry}")
    got = lease.acquire()
    now = utcnow().isoformat()
    if not got.ok:
        who = got.holder.describe() if got.holder else "another run"
        return Recovery(w.registry, w, "live", f"its reclaim lease is held by {who}", now)
    try:
        cur = read_window(rs.root, w.registry)
        if cur is None or cur.run != w.run:
            return None  # another run closed it meanwhile
        if cur.gc_job:
            running = _job_running(cur, config.kubernetes if config is not None else None)
            if running:
                return Recovery(w.registry, cur, "waiting", running, now)
        log.warning(
            "registry %s was left read-only by %s (%s): running readWrite", w.registry, cur.describe(), why
        )
        argv, timeout = _read_write_of(config, cur)
        if not argv:
            raise RegkeeperError(
                f"reclaim.readWrite: no command for registry {w.registry} (neither "
                "configured nor recorded in the window)"
            )
        run_step(argv, timeout, "readWrite")
        close_window(rs.root, cur)
        rs.record_recovery(w.registry, cur.run)
        detail = why
        if ready is not None:
            try:
                ready(w.registry)
            except RegkeeperError as e:
                detail += f"; the registry does not answer yet: {e}"
        return Recovery(w.registry, cur, "recovered", detail, now)
    except RegkeeperError as e:
        log.error("registry %s: readWrite of the window left by %s failed: %s", w.registry, w.describe(), e)
        return Recovery(w.registry, w, "failed", str(e), now)
    finally:
        lease.release()


def _job_running(w: Window, kube_cfg) -> str | None:
    """Why the window must stay (its garbage-collect Job still runs, or cannot be read); None
    when the Job finished or is gone."""
    from ..prune.gcjob import (
        job_active,  # only windows of the kubernetes-job mode need it
    )

    job = w.gc_job or {}
    ns, name = job.get("namespace", "default"), job.get("name", "?")
    try:
        active = job_active(kube_cfg, ns, name)
    except RegkeeperError as e:
        return f"cannot read its garbage-collect Job {ns}/{name}: {e}"
    return f"its garbage-collect Job {ns}/{name} is still running" if active else None
