"""Delivering alerts: POST to a webhook (Slack-compatible or Alertmanager) with retries, redacted
URLs in every log line and error, and :func:`notify_and_commit`, which saves the new state only
once every target accepted the alert (at-least-once delivery)."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import requests

from ..errors import NotifyError
from ..util import redact_url, retry_session, scrub
from .alerts import Alert, alertmanager_payload, slack_payload
from .state import StateStore

if TYPE_CHECKING:
    from .check import CapacityCheck

log = logging.getLogger(__name__)


def _session(retries: int, backoff: float) -> requests.Session:
    return retry_session(retries, backoff, frozenset({"POST"}))


def alertmanager_url(url: str) -> str:
    """``http://am:9093`` -> ``http://am:9093/api/v2/alerts`` (a full path is kept)."""
    u = url.rstrip("/")
    return u if u.endswith("/api/v2/alerts") else f"{u}/api/v2/alerts"


def send_webhook(
    url: str,
    alert: Alert,
    fmt: str = "slack",
    timeout: float = 10,
    *,
    verify: bool | str = True,
    retries: int = 3,
    backoff: float = 0.5,
    firing_ttl: timedelta = timedelta(hours=24),
    session: requests.Session | None = None,
) -> int:
    """POST ``alert`` to a Slack-compatible incoming webhook (``fmt="slack"``) or to an
    Alertmanager (``fmt="alertmanager"``; give its base URL or .../api/v2/alerts).

    Transient failures are retried with backoff by THE retry decision (regkeeper.retry via
    ``util.retry_session``: connection errors and resets, 429 with Retry-After, 502/503/504; not
    500 nor other 4xx). Returns the HTTP status; raises NotifyError otherwise. The URL (which
    may hold a token) is never logged or put in an error: only ``scheme://host/…``."""
    body: dict | list[dict]
    if fmt == "slack":
        body = slack_payload(alert)
    elif fmt == "alertmanager":
        body = alertmanager_payload(alert, firing_ttl)
    else:
        raise ValueError(f"capacity.notify.format: unknown format {fmt!r} (slack | alertmanager)")
    return post_alert(
        url,
        body,
        fmt,
        f"{alert.level} alert for registry {alert.registry}",
        timeout,
        verify=verify,
        retries=retries,
        backoff=backoff,
        session=session,
    )


def post_alert(
    url: str,
    body,
    fmt: str,
    what: str,
    timeout: float = 10,
    *,
    verify: bool | str = True,
    retries: int = 3,
    backoff: float = 0.5,
    session: requests.Session | None = None,
) -> int:
    """POST one alert body (already in ``fmt``) to a notify target: the one delivery path of
    every capacity alert (storage thresholds, read-only registries). ``what`` names the alert in
    errors and logs; the URL shows as ``scheme://host/…`` only."""
    target = alertmanager_url(url) if fmt == "alertmanager" else url
    shown = redact_url(url)
    own = session is None
    s = session or _session(retries, backoff)
    try:
        resp = s.post(target, json=body, timeout=timeout, verify=verify)
    except requests.RequestException as e:
        raise NotifyError(f"webhook {shown}: {what} not delivered: {type(e).__name__}") from None
    finally:
        if own:
            s.close()
    if resp.status_code >= 300:
        raise NotifyError(
            f"webhook {shown}: {what} refused: HTTP {resp.status_code} {scrub(resp.text[:200].strip())}"
        )
    log.info("capacity: %s sent to %s (%s, HTTP %s)", what, shown, fmt, resp.status_code)
    return resp.status_code


@dataclass(frozen=True, slots=True)
class Delivery:
    target: str  # redacted URL
    fmt: str
    ok: bool
    status: int | None
    error: str | None = None


def target_of(t) -> tuple[str, str]:
    """``(url, format)`` of a ``config.NotifyConfig`` (its secret resolved) or a pair."""
    if isinstance(t, (tuple, list)):
        return t[0], (t[1] if len(t) > 1 else "slack")
    url = t.webhook.get() if hasattr(t.webhook, "get") else t.webhook
    return url, getattr(t, "format", "slack")


def notify_and_commit(
    check: "CapacityCheck",
    targets,
    store: StateStore,
    *,
    timeout: float = 10,
    verify: bool | str = True,
    retries: int = 3,
) -> list[Delivery]:
    """Send ``check.alert`` (if any) to every target (``config.NotifyConfig`` objects or
    ``(url, fmt)`` pairs), then save ``check.state``. When a delivery fails the state is *not*
    saved, so the next run sends the alert again (at-least-once)."""
    out: list[Delivery] = []
    if check.alert is not None:
        for t in targets:
            url, fmt = target_of(t)
            try:
                status = send_webhook(url, check.alert, fmt, timeout, verify=verify, retries=retries)
                out.append(Delivery(redact_url(url), fmt, True, status))
            except NotifyError as e:
                log.warning("%s", e)
                out.append(Delivery(redact_url(url), fmt, False, None, str(e)))
    if all(d.ok for d in out):
        store.save(check.state)
    return out
