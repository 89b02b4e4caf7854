"""The alert itself and how it reads: :class:`Alert`, its message, and its payloads for Slack,
Alertmanager (v2 ``/api/v2/alerts``, one entry per severity) and Prefect events."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..util import human_bytes
from .thresholds import _RANK
from .timestamps import _iso, registry_resource

ALERT_NAME = "RegistryStorageUsage"
EVENT_PREFIX = "regkeeper.capacity"


@dataclass(frozen=True, slots=True)
class Alert:
    registry: str
    level: str  # "warn" | "critical" | "resolved"
    previous_level: str  # "ok" | "warn" | "critical"
    ratio: float
    used_bytes: int | None
    capacity_bytes: int | None
    days_to_full: float | None
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    warn: float = 0.80
    critical: float = 0.90
    repeat: bool = False  # a re-assertion of an unchanged level (reassert_after)

    @property
    def kind(self) -> str:
        """crossing | escalation | de-escalation | resolved | repeat"""
        if self.repeat:
            return "repeat"
        if self.level == "resolved":
            return "resolved"
        if self.previous_level == "ok":
            return "crossing"
        return "escalation" if _RANK[self.level] > _RANK[self.previous_level] else "de-escalation"

    @property
    def event_name(self) -> str:
        return f"{EVENT_PREFIX}.{self.level}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def alert_message(a: Alert) -> str:
    size = (
        f" ({human_bytes(a.used_bytes)} of {human_bytes(a.capacity_bytes)})"
        if a.used_bytes is not None and a.capacity_bytes
        else ""
    )
    eta = (
        f"; about {a.days_to_full:.1f} days until full at the current growth"
        if a.days_to_full is not None and a.level != "resolved"
        else ""
    )
    r = a.registry
    if a.level == "resolved":
        return (
            f"[RESOLVED] registry {r}: storage usage back to {_pct(a.ratio)}{size}, below the "
            f"warn threshold {_pct(a.warn)} (was {a.previous_level})"
        )
    head = f"[{a.level.upper()}] registry {r}: storage usage {_pct(a.ratio)}{size}"
    thr = a.critical if a.level == "critical" else a.warn
    if a.repeat:
        return f"{head}, still at or above the {a.level} threshold {_pct(thr)}{eta}"
    if a.kind == "de-escalation":
        return f"{head}, down from critical (critical threshold {_pct(a.critical)}){eta}"
    return f"{head}, at or above the {a.level} threshold {_pct(thr)}{eta}"


def _severity(level: str) -> str:
    return "warning" if level == "warn" else level


def slack_payload(alert: Alert) -> dict:
    color = {"critical": "#d00000", "warn": "#f2c744", "resolved": "#2eb886"}[alert.level]
    fields = [
        {"title": "Registry", "value": alert.registry, "short": True},
        {"title": "Level", "value": f"{alert.previous_level} → {alert.level}", "short": True},
        {"title": "Usage", "value": _pct(alert.ratio), "short": True},
    ]
    if alert.used_bytes is not None:
        fields.append(
            {
                "title": "Used / capacity",
                "short": True,
                "value": f"{human_bytes(alert.used_bytes)} / {human_bytes(alert.capacity_bytes)}",
            }
        )
    if alert.days_to_full is not None and alert.level != "resolved":
        fields.append({"title": "Days to full", "value": f"{alert.days_to_full:.1f}", "short": True})
    return {
        "text": alert.message,
        "attachments": [
            {
                "color": color,
                "fallback": alert.message,
                "fields": fields,
                "footer": "regkeeper capacity",
                "ts": int(alert.at.timestamp()),
            }
        ],
    }


def alertmanager_payload(alert: Alert, firing_ttl: timedelta = timedelta(hours=24)) -> list[dict]:
    """Alertmanager v2 ``POST /api/v2/alerts`` body: one entry per severity. The current level
    fires (``startsAt`` now, ``endsAt`` now + ``firing_ttl``: Alertmanager resolves an alert by
    itself once endsAt passes unless it is sent again, see ``reassert_after``); the other
    severity, and both on a resolve, get ``endsAt`` = now, which ends them."""
    now = _iso(alert.at)
    active = None if alert.level == "resolved" else alert.level
    ann = {
        "summary": alert.message,
        "description": (
            f"Registry {alert.registry} storage usage is {_pct(alert.ratio)} "
            f"(warn {_pct(alert.warn)}, critical {_pct(alert.critical)})."
        ),
        "usage_ratio": f"{alert.ratio:.4f}",
        "previous_level": alert.previous_level,
    }
    if alert.used_bytes is not None:
        ann["used_bytes"] = str(alert.used_bytes)
    if alert.capacity_bytes is not None:
        ann["capacity_bytes"] = str(alert.capacity_bytes)
    if alert.days_to_full is not None:
        ann["days_to_full"] = f"{alert.days_to_full:.1f}"
    out = []
    for level in ("warn", "critical"):
        entry: dict[str, Any] = {
            "labels": {
                "alertname": ALERT_NAME,
                "severity": _severity(level),
                "registry": alert.registry,
                "source": "regkeeper",
            },
            "annotations": dict(ann),
        }
        if level == active:
            entry["startsAt"] = now
            entry["endsAt"] = _iso(alert.at + firing_ttl)
        else:
            entry["endsAt"] = now
        out.append(entry)
    return out


def event_payload(alert: Alert) -> tuple[str, dict, dict]:
    """``(event name, resource, payload)`` for ``prefect.events.emit_event``: names
    ``regkeeper.capacity.warn|critical|resolved``, resource ``regkeeper.registry.<name>``."""
    resource = registry_resource(alert.registry)
    payload = {
        "registry": alert.registry,
        "level": alert.level,
        "previous_level": alert.previous_level,
        "kind": alert.kind,
        "ratio": alert.ratio,
        "used_bytes": alert.used_bytes,
        "capacity_bytes": alert.capacity_bytes,
        "days_to_full": alert.days_to_full,
        "warn": alert.warn,
        "critical": alert.critical,
        "message": alert.message,
        "at": _iso(alert.at),
    }
    return alert.event_name, resource, payload
