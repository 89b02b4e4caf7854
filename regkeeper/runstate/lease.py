"""Leases: one holder at a time for a named piece of work (``replicate-rule-<name>``,
``reclaim-<registry>``), in ``<stateDir>/leases/<name>.json``.

- Taken atomically: the record is created only when none exists (``records.create_exclusive``).
- Renewed by a heartbeat thread every quarter of ``leaseTtl`` while held: ``expires`` moves on.
- Released when the holder is done (the record is removed, only if it is still ours).
- Gone when it expired (no heartbeat for ``leaseTtl``: the holder died, on any host) OR, on the
  holder's own host, its pid is not running / is a zombie / is another process now. A gone lease
  is taken over by the next run that asks for it, which says whose it was; it is never released
  by hand. Taking over moves the stale record aside first and checks it is the one judged gone,
  so two runs taking over at once cannot both win.

Expiry compares wall clocks: hosts sharing a state directory need synchronised clocks (NTP);
the default ``leaseTtl`` (2 minutes) leaves room for ordinary skew.
"""

import logging
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..util import utcnow
from .owner import Owner
from .records import (
    age_seconds,
    create_exclusive,
    read_record,
    remove_record,
    write_record,
)

log = logging.getLogger(__name__)


def lease_path(root: Path, name: str) -> Path:
    return Path(root) / "leases" / (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") + ".json")


@dataclass
class Holder:
    """Who holds a lease, as its record says."""

    name: str
    token: str
    owner: Owner
    acquired: str
    heartbeat: str
    expires: datetime | None
    data: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, name: str, rec: dict) -> "Holder | None":
        if rec.get("corrupt") or not rec.get("token"):
            return None
        try:
            exp = datetime.fromisoformat(rec["expires"])
        except (KeyError, TypeError, ValueError):
            exp = None
        return cls(
            name=name,
            token=str(rec["token"]),
            owner=Owner.from_dict(rec.get("owner") or {}),
            acquired=str(rec.get("acquired", "?")),
            heartbeat=str(rec.get("heartbeat", "?")),
            expires=exp,
            data=dict(rec.get("data") or {}),
        )

    def gone_reason(self, now: datetime | None = None) -> str | None:
        """Why this holder no longer holds the lease; None while it does."""
        now = now or utcnow()
        if self.expires is None or now >= self.expires:
            return f"its lease expired (last heartbeat {self.heartbeat})"
        return self.owner.gone_reason()

    def describe(self) -> str:
        return self.owner.describe()


def read_holder(root: Path, name: str) -> Holder | None:
    rec = read_record(lease_path(root, name))
    return Holder.from_record(name, rec) if rec is not None else None


@dataclass
class Acquired:
    ok: bool
    holder: Holder | None = None  # busy: who holds it
    took_over: Holder | None = None  # ok: the gone holder whose lease this run took
    reason: str | None = None  # why that holder was gone

    def takeover_note(self, what: str) -> str | None:
        if not self.ok or self.took_over is None:
            return None
        return f"took over {what} from {self.took_over.describe()}: {self.reason}"


class Lease:
    """A named lease for ``owner``. ``acquire()``, then ``with lease.held():`` renews it while
    the block runs and releases it at the end."""

    def __init__(self, root: Path, name: str, owner: Owner, ttl: float, data: dict | None = None):
        self.root = Path(root)
        self.name = name
        self.owner = owner
        self.ttl = max(1.0, float(ttl))
        self.data = dict(data or {})
        self.path = lease_path(self.root, name)
        self.token = uuid.uuid4().hex
        self.acquired_at: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self) -> dict:
        now = utcnow()
        return {
            "lease": self.name,
            "token": self.token,
            "owner": self.owner.to_dict(),
            "acquired": self.acquired_at or now.isoformat(),
            "heartbeat": now.isoformat(),
            "expires": (now + timedelta(seconds=self.ttl)).isoformat(),
            "data": self.data,
        }

    def acquire(self, wait: float = 0.0, poll: float = 1.0) -> Acquired:
        """Take the lease, taking over a gone holder's; wait up to ``wait`` seconds for a live
        holder to finish. Returns who holds it when it cannot be had."""
        deadline = time.monotonic() + wait
        while True:
            got = self._try()
            if got.ok or time.monotonic() >= deadline:
                return got
            time.sleep(min(poll, max(0.05, deadline - time.monotonic())))

    def _try(self) -> Acquired:
        for _ in range(5):
            self.acquired_at = utcnow().isoformat()
            if create_exclusive(self.path, self._doc()):
                return Acquired(True)
            rec = read_record(self.path)
            if rec is None:
                continue  # released meanwhile: try again
            holder = Holder.from_record(self.name, rec)
            if holder is None:  # unreadable: gone once older than the ttl
                age = age_seconds(self.path)
                if age is not None and age < self.ttl:
                    return Acquired(False)
                reason = "its lease record was unreadable"
            else:
                gone = holder.gone_reason()
                if gone is None:
                    return Acquired(False, holder=holder)
                reason = gone
            if self._move_aside(holder) and create_exclusive(self.path, self._doc()):
                log.warning(
                    "lease %s: taken over from %s: %s",
                    self.name,
                    holder.describe() if holder else "an unreadable record",
                    reason,
                )
                return Acquired(True, took_over=holder, reason=reason)
        rec = read_record(self.path)
        return Acquired(False, holder=Holder.from_record(self.name, rec) if rec else None)

    def _move_aside(self, judged: Holder | None) -> bool:
        """Move the stale record away; True when the record moved is the one judged gone
        (another run may have taken the lease meanwhile: its record is put back)."""
        aside = self.path.with_name(f".{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        moved = read_record(aside) or {}
        if moved.get("token") != (judged.token if judged is not None else None):
            try:
                os.link(aside, self.path)  # not ours to remove: put it back
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def renew(self) -> bool:
        """Move ``expires`` on; False (and ``lost``) when the record is no longer ours."""
        rec = read_record(self.path)
        if rec is None or rec.get("token") != self.token:
            if not self.lost:
                log.error("lease %s: lost (taken over by another run)", self.name)
            self.lost = True
            return False
        write_record(self.path, self._doc())
        return True

    def release(self) -> None:
        self._stop_heartbeat()
        rec = read_record(self.path)
        if rec is not None and rec.get("token") == self.token:
            remove_record(self.path)

    def _beat(self) -> None:
        interval = max(0.2, self.ttl / 4)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception as e:  # noqa: BLE001 - a missed beat is retried on the next one
                log.warning("lease %s: heartbeat failed: %s", self.name, e)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @contextmanager
    def held(self):
        """Renew the (acquired) lease in a heartbeat thread; release it when the block ends."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self.release()
