"""Who owns a piece of run state, and whether that owner is gone.

An :class:`Owner` names a run: its run id (the Prefect flow run id, else a fresh uuid), the job,
the host and pid namespace, the pid, the process start time (``/proc/<pid>/stat`` field 22, clock ticks since
boot) and the boot id, so a pid reused by another process, or by a process after a reboot, is
not mistaken for the owner. Liveness can only be judged on the owner's own host: elsewhere only
a lease's expiry says that its owner is gone (see ``lease``).
"""

import os
import socket
import uuid
from dataclasses import asdict, dataclass, field

from ..util import utcnow


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def boot_id() -> str | None:
    v = _read("/proc/sys/kernel/random/boot_id")
    return v.strip() if v else None


def pid_namespace() -> str | None:
    """The pid namespace (``pid:[inode]``): two containers may share a host name, not pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_state(pid: int) -> tuple[str, str] | None:
    """``(state letter, start time)`` of a process from ``/proc/<pid>/stat``, None when there is
    no such process (or no /proc)."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses; split after the last ")"
    rest = raw[raw.rfind(")") + 2 :].split()
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


def pid_start(pid: int) -> str | None:
    st = process_state(pid)
    return st[1] if st else None


@dataclass(frozen=True)
class Owner:
    run: str
    job: str
    host: str
    pid: int
    started: str  # ISO time the run began
    pid_start: str | None = None
    boot: str | None = None
    pidns: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def current(cls, job: str, run: str | None = None) -> "Owner":
        pid = os.getpid()
        return cls(
            run=str(run or uuid.uuid4()),
            job=job,
            host=socket.gethostname(),
            pid=pid,
            started=utcnow().isoformat(timespec="seconds"),
            pid_start=pid_start(pid),
            boot=boot_id(),
            pidns=pid_namespace(),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Owner":
        return cls(
            run=str(d.get("run", "?")),
            job=str(d.get("job", "?")),
            host=str(d.get("host", "?")),
            pid=int(d.get("pid") or 0),
            started=str(d.get("started", "?")),
            pid_start=d.get("pid_start"),
            boot=d.get("boot"),
            pidns=d.get("pidns"),
            extra=dict(d.get("extra") or {}),
        )

    def describe(self) -> str:
        """``run R (gc, pid P on host H, started T)``."""
        return f"run {self.run} ({self.job}, pid {self.pid} on host {self.host}, started {self.started})"

    def on_this_host(self) -> bool:
        """Same host name and the same pid namespace: only then is its pid ours to look up."""
        return self.host == socket.gethostname() and (self.pidns or None) == pid_namespace()

    def gone_reason(self) -> str | None:
        """Why the owner process is certainly gone, judged on this host; None when it is alive or
        runs on another host (there, only expiry tells)."""
        if not self.on_this_host():
            return None
        if self.boot and boot_id() and self.boot != boot_id():
            return f"host {self.host} rebooted since {self.describe()} began"
        st = process_state(self.pid)
        if st is None:
            return f"pid {self.pid} is not running on host {self.host}"
        state, start = st
        if state in ("Z", "X"):
            return f"pid {self.pid} on host {self.host} has exited (zombie)"
        if self.pid_start and start != self.pid_start:
            return f"pid {self.pid} on host {self.host} is another process now"
        return None
