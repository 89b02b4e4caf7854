"""Read-only alerts: a registry that refuses writes, and read-only windows that regkeeper
recovered. A distinct alert (``RegistryReadOnly``, ``RegistryReadOnlyRecovered``; Prefect events
``regkeeper.readonly.<kind>``) sent through the capacity notify targets (Slack-compatible
webhooks, Alertmanager) by the one delivery path, ``notify.post_alert``.

Kinds: ``read-only`` (the registry refuses writes and no live regkeeper window explains it),
``recovery-failed`` (a window left by a dead run could not be closed: readWrite failed),
``recovered`` (a window left by a dead run was closed: readWrite run), ``writable`` (a registry
reported read-only takes writes again: the alert resolves).
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..util import redact_url
from .notify import Delivery, NotifyError, post_alert, target_of
from .timestamps import _iso, registry_resource

log = logging.getLogger(__name__)

READONLY_ALERT = "RegistryReadOnly"
RECOVERED_ALERT = "RegistryReadOnlyRecovered"
READONLY_EVENT_PREFIX = "regkeeper.readonly"
KINDS = ("read-only", "recovery-failed", "recovered", "writable")


@dataclass(frozen=True)
class ReadOnlyAlert:
    registry: str
    kind: str  # one of KINDS
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    details: dict = field(default_factory=dict)  # run, pid, started, detail ... (no secrets)

    @property
    def firing(self) -> bool:
        return self.kind in ("read-only", "recovery-failed")

    @property
    def severity(self) -> str:
        return {
            "read-only": "critical",
            "recovery-failed": "critical",
            "recovered": "warning",
            "writable": "resolved",
        }[self.kind]

    @property
    def event_name(self) -> str:
        return f"{READONLY_EVENT_PREFIX}.{self.kind}"


def slack_payload(a: ReadOnlyAlert) -> dict:
    color = {"critical": "#d00000", "warning": "#f2c744", "resolved": "#2eb886"}[a.severity]
    fields = [
        {"title": "Registry", "value": a.registry, "short": True},
        {"title": "State", "value": a.kind, "short": True},
    ]
    fields += [{"title": k, "value": str(v), "short": True} for k, v in a.details.items() if v is not None]
    return {
        "text": a.message,
        "attachments": [
            {
                "color": color,
                "fallback": a.message,
                "fields": fields,
                "footer": "regkeeper",
                "ts": int(a.at.timestamp()),
            }
        ],
    }


def alertmanager_payload(a: ReadOnlyAlert, firing_ttl: timedelta = timedelta(hours=24)) -> list[dict]:
    """``RegistryReadOnly`` fires for ``read-only`` / ``recovery-failed`` (``endsAt`` now +
    ``firing_ttl``) and ends otherwise; ``recovered`` also fires ``RegistryReadOnlyRecovered``
    (warning) for an hour, so someone learns a run died inside the window."""
    now = _iso(a.at)
    ann = {"summary": a.message, **{k: str(v) for k, v in a.details.items() if v is not None}}
    labels = {"registry": a.registry, "source": "regkeeper"}
    main: dict[str, Any] = {
        "labels": {"alertname": READONLY_ALERT, "severity": "critical", **labels},
        "annotations": dict(ann),
    }
    if a.firing:
        main.update(startsAt=now, endsAt=_iso(a.at + firing_ttl))
    else:
        main["endsAt"] = now
    out = [main]
    if a.kind == "recovered":
        out.append(
            {
                "labels": {"alertname": RECOVERED_ALERT, "severity": "warning", **labels},
                "annotations": dict(ann),
                "startsAt": now,
                "endsAt": _iso(a.at + timedelta(hours=1)),
            }
        )
    return out


def event_payload(a: ReadOnlyAlert) -> tuple[str, dict, dict]:
    """``(event name, resource, payload)`` for ``prefect.events.emit_event``."""
    resource = registry_resource(a.registry)
    payload = {
        "registry": a.registry,
        "kind": a.kind,
        "message": a.message,
        "at": _iso(a.at),
        **{k: v for k, v in a.details.items()},
    }
    return a.event_name, resource, payload


def notify_readonly(
    alert: ReadOnlyAlert, targets, *, timeout: float = 10, verify: bool | str = True, retries: int = 3
) -> list[Delivery]:
    """Send ``alert`` to every notify target (``config.NotifyConfig`` objects or ``(url, fmt)``
    pairs). Never raises: each target's outcome is a Delivery."""
    out: list[Delivery] = []
    what = f"{alert.kind} alert for registry {alert.registry}"
    for t in targets:
        url, fmt = target_of(t)
        body = slack_payload(alert) if fmt == "slack" else alertmanager_payload(alert)
        try:
            status = post_alert(url, body, fmt, what, timeout, verify=verify, retries=retries)
            out.append(Delivery(redact_url(url), fmt, True, status))
        except NotifyError as e:
            log.warning("%s", e)
            out.append(Delivery(redact_url(url), fmt, False, None, str(e)))
    return out
