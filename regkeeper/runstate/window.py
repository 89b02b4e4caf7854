"""Read-only window records: ``<stateDir>/readonly/<registry>.json``.

The reclaim writes one BEFORE it runs ``readOnly`` and removes it only after ``readWrite``
succeeded. It names the run that opened the window (its owner), when, the ``readWrite`` argv to
run (as configured at that moment), the reclaim lease that run holds (``reclaim-<registry>``),
the step it is at and the pid of that step's child process (and, in the kubernetes-job mode,
the garbage-collect Job). A window is *live* while its lease is held by a live owner, or while
its garbage-collect child still runs on this host; otherwise it was left open by a run that is
gone, and the next run of any job closes it (``recover``).
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .lease import Holder, read_holder
from .owner import Owner
from .records import read_record, remove_record, write_record


def lease_name(registry: str) -> str:
    """The lease a reclaim of ``registry`` holds from before ``readOnly`` to after ``readWrite``."""
    return f"reclaim-{registry}"


def window_path(root: Path, registry: str) -> Path:
    import re

    return Path(root) / "readonly" / (re.sub(r"[^A-Za-z0-9._-]+", "-", registry).strip("-") + ".json")


@dataclass
class Window:
    registry: str
    owner: Owner
    started: str
    read_write: list[str]
    timeout: float
    lease: str
    lease_token: str
    mode: str = "command"
    step: str = "readOnly"
    step_pid: int | None = None
    step_pid_start: str | None = None
    gc_job: dict | None = None  # kubernetes-job: {"namespace": ..., "name": ...}
    extra: dict = field(default_factory=dict)

    @property
    def run(self) -> str:
        return self.owner.run

    def to_dict(self) -> dict:
        d = asdict(self)
        d["owner"] = self.owner.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Window":
        return cls(
            registry=str(d["registry"]),
            owner=Owner.from_dict(d.get("owner") or {}),
            started=str(d.get("started", "?")),
            read_write=[str(a) for a in d.get("read_write") or []],
            timeout=float(d.get("timeout") or 1800),
            lease=str(d.get("lease") or ""),
            lease_token=str(d.get("lease_token") or ""),
            mode=str(d.get("mode") or "command"),
            step=str(d.get("step") or "?"),
            step_pid=d.get("step_pid"),
            step_pid_start=d.get("step_pid_start"),
            gc_job=d.get("gc_job"),
            extra=dict(d.get("extra") or {}),
        )

    def describe(self) -> str:
        """``run R (pid P, started T)``."""
        return f"run {self.run} (pid {self.owner.pid}, started {self.started})"

    def step_child(self) -> Owner | None:
        if not self.step_pid:
            return None
        o = self.owner
        return Owner(
            run=o.run,
            job=o.job,
            host=o.host,
            pid=int(self.step_pid),
            started=self.started,
            pid_start=self.step_pid_start,
            boot=o.boot,
            pidns=o.pidns,
        )


def save_window(root: Path, w: Window) -> None:
    """Write (or update) the record durably: on disk before the step it guards runs."""
    write_record(window_path(root, w.registry), w.to_dict())


def read_window(root: Path, registry: str) -> Window | None:
    rec = read_record(window_path(root, registry))
    if rec is None or rec.get("corrupt") or "registry" not in rec:
        return None
    return Window.from_dict(rec)


def list_windows(root: Path) -> list[Window]:
    d = Path(root) / "readonly"
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        rec = read_record(p)
        if rec and not rec.get("corrupt") and "registry" in rec:
            out.append(Window.from_dict(rec))
    return out


def close_window(root: Path, w: Window) -> bool:
    """Remove the record if it is still this run's window."""
    cur = read_window(root, w.registry)
    if cur is None or cur.run != w.run:
        return False
    return remove_record(window_path(root, w.registry))


@dataclass
class WindowStatus:
    window: Window
    live: bool
    why: str  # live: who keeps it open; gone: why its owner is gone
    holder: Holder | None = None

    def describe(self) -> str:
        """``read-only for garbage-collect by run R (pid P on host H) since T``."""
        o = self.window.owner
        return (
            f"read-only for garbage-collect by run {o.run} (pid {o.pid} on host {o.host}) since "
            f"{self.window.started}"
        )


def window_status(root: Path, registry: str) -> WindowStatus | None:
    """The open window of ``registry`` and whether a live run still owns it; None when none."""
    w = read_window(root, registry)
    return judge(root, w) if w is not None else None


def judge(root: Path, w: Window) -> WindowStatus:
    holder = read_holder(root, w.lease) if w.lease else None
    if holder is not None and holder.gone_reason() is None:
        who = "its owner" if holder.token == w.lease_token else f"{holder.describe()}"
        return WindowStatus(w, True, f"the reclaim lease is held by {who}", holder)
    child = w.step_child()
    if child is not None and child.on_this_host() and child.gone_reason() is None:
        return WindowStatus(w, True, f"its {w.step} step (pid {child.pid}) is still running", holder)
    if holder is not None:
        why = holder.gone_reason() or "?"
    else:
        why = w.owner.gone_reason() or "it no longer holds its reclaim lease"
    return WindowStatus(w, False, why, holder)
