"""Capacity state machine: one alert per change of level, persisted per registry.

Levels and alerts (the state machine)
-------------------------------------
Levels are ordered ``ok < warn < critical``. A ratio is ``warn`` at ``>= warn`` (0.80) and
``critical`` at ``>= critical`` (0.90) of the capacity (``capacityBytes``, else the filesystem
size; S3 storage without ``capacityBytes`` has no ratio, and nothing is evaluated).

- Going up uses the thresholds as they are. Going down needs the ratio to fall below the
  threshold minus ``hysteresis`` (default 0.02): at 0.89 a ``critical`` registry stays critical,
  at 0.87 it is ``warn``; a ``warn`` registry is ``ok`` again below 0.78. This stops a registry
  hovering at 80% from alerting on every run.
- One alert per change of level, none while the level stays the same:
  ``ok->warn`` sends ``warn``; ``warn->critical`` and ``ok->critical`` send ``critical``;
  ``critical->warn`` sends one ``warn`` (a de-escalation update: people watching a critical
  alert learn it eased, and Alertmanager gets the critical alert ended); anything ``->ok`` sends
  ``resolved``.
- ``reassert_after`` (off by default) re-sends the current non-ok level when the last alert is
  older than that; use it with Alertmanager so a firing alert does not expire (see send_webhook).

State lives in ``state-<registry>.json`` (written atomically: temp file + ``os.replace``).
:func:`notify_and_commit` saves it only after every webhook accepted the alert, so an alert that
could not be delivered is sent again on the next run (at-least-once).
"""

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..util import atomic_write
from .alerts import Alert, alert_message
from .thresholds import _RANK, Thresholds, next_level
from .timestamps import _iso, _parse_iso

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CapacityState:
    registry: str
    level: str = "ok"
    ratio: float | None = None
    since: str | None = None  # ISO time the current level was entered
    updated: str | None = None  # ISO time of the last evaluation
    last_alert_level: str | None = None  # warn | critical | resolved
    last_alert_at: str | None = None

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, registry: str, d: dict) -> "CapacityState":
        level = d.get("level", "ok")
        if level not in _RANK:
            level = "ok"
        ratio = d.get("ratio")
        return cls(
            registry=registry,
            level=level,
            ratio=float(ratio) if isinstance(ratio, (int, float)) else None,
            since=d.get("since"),
            updated=d.get("updated"),
            last_alert_level=d.get("last_alert_level"),
            last_alert_at=d.get("last_alert_at"),
        )


def evaluate(
    ratio: float | None,
    thresholds: Thresholds,
    previous_state: CapacityState | None,
    *,
    registry: str | None = None,
    used_bytes: int | None = None,
    capacity_bytes: int | None = None,
    days_to_full: float | None = None,
    now: datetime | None = None,
    reassert_after: timedelta | None = None,
) -> tuple[CapacityState, Alert | None]:
    """Advance the state machine by one measurement. Returns the new state (not saved) and the
    alert to send, or None. ``ratio=None`` (no capacity known) changes nothing and alerts nothing."""
    now = now or datetime.now(UTC)
    prev = previous_state
    if prev is None:
        if registry is None:
            raise ValueError("evaluate: give previous_state or registry")
        prev = CapacityState(registry=registry)
    state = replace(prev, updated=_iso(now))
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return state, None
    old = prev.level
    new = next_level(ratio, thresholds, old)
    state.ratio = round(float(ratio), 6)
    alert_level: str | None = None
    repeat = False
    if new != old:
        state.level = new
        state.since = _iso(now)
        alert_level = "resolved" if new == "ok" else new
    elif new != "ok" and reassert_after is not None:
        last = _parse_iso(prev.last_alert_at)
        if last is None or now - last >= reassert_after:
            alert_level, repeat = new, True
    if alert_level is None:
        return state, None
    alert = Alert(
        registry=prev.registry,
        level=alert_level,
        previous_level=old,
        ratio=float(ratio),
        used_bytes=used_bytes,
        capacity_bytes=capacity_bytes,
        days_to_full=days_to_full,
        message="",
        at=now,
        warn=thresholds.warn,
        critical=thresholds.critical,
        repeat=repeat,
    )
    alert = replace(alert, message=alert_message(alert))
    state.last_alert_level = alert_level
    state.last_alert_at = _iso(now)
    return state, alert


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, text, fsync=True)


class StateStore:
    """``<directory>/state-<registry>.json`` per registry (e.g. reports/capacity/)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, registry: str) -> Path:
        if not registry or "/" in registry or registry.startswith("."):
            raise ValueError(f"registry name {registry!r} cannot name a state file")
        return self.directory / f"state-{registry}.json"

    def load(self, registry: str) -> CapacityState:
        p = self.path(registry)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            return CapacityState(registry=registry)
        except (OSError, ValueError) as e:
            log.warning("capacity state %s unreadable (%s); starting from level ok", p, type(e).__name__)
            return CapacityState(registry=registry)
        if not isinstance(data, dict):
            return CapacityState(registry=registry)
        return CapacityState.from_dict(registry, data)

    def save(self, state: CapacityState) -> Path:
        p = self.path(state.registry)
        _atomic_write(p, state.to_json() + "\n")
        return p
