"""Capacity: measure storage, classify it against thresholds, alert once per crossing, forecast.

Prefect-free. The capacity flow composes these per registry:

    usage = measure_storage(rc)                                   # physical: filesystem / S3
    check = check_capacity(rc.name, usage, capacity_bytes=rc.capacity_bytes, thresholds=...,
                           store=StateStore(dir), history=UsageHistory(dir / "history.csv"))
    notify_and_commit(check, targets, store)                      # webhooks, then persist state
    metrics.set_storage(...); metrics.set_days_to_full(check.forecast.days_to_full)

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

import csv
import html
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import requests

from ..errors import RegkeeperError
from ..util import atomic_write, human_bytes, redact_url, retry_session, scrub

log = logging.getLogger(__name__)

LEVELS = ("ok", "warn", "critical")
_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}
ALERT_NAME = "RegistryStorageUsage"
EVENT_PREFIX = "regkeeper.capacity"


class CapacityError(RegkeeperError):
    """Storage could not be measured (names the path / bucket and the problem)."""


class NotifyError(RegkeeperError):
    """A webhook refused or could not be reached (URL shown redacted, never in full)."""


# =========================================================================== measure


@dataclass(frozen=True, slots=True)
class StorageUsage:
    bytes_used: int
    files: int
    fs_size_bytes: int | None
    fs_free_bytes: int | None
    source: Literal["filesystem", "s3"]
    root: str
    seconds: float = 0.0          # how long the measurement took
    errors: int = 0               # directories that could not be read (filesystem)

    @property
    def fs_used_bytes(self) -> int | None:
        if self.fs_size_bytes is None or self.fs_free_bytes is None:
            return None
        return self.fs_size_bytes - self.fs_free_bytes


def filesystem_usage(root: str | os.PathLike) -> StorageUsage:
    """Apparent size (``du -sb`` style, st_size) and count of the regular files under ``root``,
    plus the size / free space of its filesystem (statvfs; free = available to non-root).

    Iterative os.scandir walk; symlinks are not followed; a hard-linked file is counted once.
    Directories that vanish meanwhile (a concurrent garbage-collect) are skipped; unreadable
    ones are counted in ``errors`` and logged."""
    t0 = time.perf_counter()
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise CapacityError(f"storage path {root}: not a directory (storage.path)")
    total = files = errors = 0
    seen_inodes: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except FileNotFoundError:
            continue
        except OSError as e:
            errors += 1
            log.warning("capacity: cannot read directory %s: %s", d, e.strerror)
            continue
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if st.st_nlink > 1:
                            key = (st.st_dev, st.st_ino)
                            if key in seen_inodes:
                                continue
                            seen_inodes.add(key)
                        total += st.st_size
                        files += 1
                except FileNotFoundError:
                    continue
    vfs = os.statvfs(root)
    return StorageUsage(bytes_used=total, files=files, fs_size_bytes=vfs.f_blocks * vfs.f_frsize,
                        fs_free_bytes=vfs.f_bavail * vfs.f_frsize, source="filesystem", root=root,
                        seconds=time.perf_counter() - t0, errors=errors)


def s3_usage(client, bucket: str, prefix: str = "", *, page_size: int = 1000) -> StorageUsage:
    """Total bytes and object count under ``s3://bucket/prefix`` (paginated ListObjectsV2,
    ``page_size`` keys per page) through a boto3 S3 client (which carries its own timeouts and
    retries)."""
    from botocore.exceptions import BotoCoreError, ClientError

    t0 = time.perf_counter()
    total = objects = 0
    root = f"s3://{bucket}/{prefix}"
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
            for obj in page.get("Contents", ()) or ():
                total += int(obj.get("Size", 0))
                objects += 1
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise CapacityError(f"{root}: listing failed: {err.get('Code', 'error')} (HTTP {status})") from None
    except BotoCoreError as e:
        raise CapacityError(f"{root}: listing failed: {type(e).__name__}") from None
    return StorageUsage(bytes_used=total, files=objects, fs_size_bytes=None, fs_free_bytes=None,
                        source="s3", root=root, seconds=time.perf_counter() - t0)


def measure_storage(rc, s3_client=None) -> StorageUsage | None:
    """Physical usage for a ``config.RegistryConfig``; None when regkeeper has no access to the
    registry's storage (no ``storage`` section and not an S3 registry with keys)."""
    from ..storage import S3Storage, storage_for
    reader = storage_for(rc)
    if reader is None:
        if rc.type == "proxy" and rc.proxy_cache is not None and rc.proxy_cache.storage:
            return filesystem_usage(rc.proxy_cache.storage)
        return None
    if s3_client is not None and isinstance(reader, S3Storage):
        reader.client = s3_client
    return storage_usage(reader)


def storage_usage(reader) -> StorageUsage | None:
    """Physical usage of a ``storage.StorageReader`` (the registry's whole root)."""
    if reader is None:
        return None
    if reader.kind == "filesystem":
        return filesystem_usage(reader.root)
    if reader.kind == "s3":
        return s3_usage(reader.client, reader.bucket, reader.root_prefix)
    return None


def resolve_capacity(usage: StorageUsage | None, capacity_bytes: int | None) -> tuple[int | None, str, str | None]:
    """``(capacity, source, note)``: the configured ``capacityBytes``, else the filesystem size;
    for S3 without ``capacityBytes`` there is no capacity and the note says so."""
    if capacity_bytes:
        return int(capacity_bytes), "capacityBytes", None
    if usage is None:
        return None, "none", "storage not readable by regkeeper (no storage section): no usage ratio"
    if usage.source == "filesystem" and usage.fs_size_bytes:
        return usage.fs_size_bytes, "filesystem", None
    if usage.source == "s3":
        return None, "none", ("S3 storage has no size limit and no capacityBytes is configured: "
                              "usage is reported, no usage ratio and no threshold alerts")
    return None, "none", "no capacityBytes configured and no filesystem size: no usage ratio"


# --------------------------------------------------------------------------- logical usage

LOGICAL_COLUMNS = ["repository", "tags", "manifests", "unique_bytes", "shared_bytes", "total_bytes"]


def _repo_blobs(repo) -> dict[str, int]:
    """digest -> size of every blob a repository references: config + layers of each manifest,
    and the manifests themselves (distribution stores them as blobs too)."""
    out: dict[str, int] = {}
    for d, m in repo.manifests.items():
        out[d] = m.size
        for b in m.blobs:
            out[b.digest] = b.size
    return out


def logical_usage(inventory):
    """Per repository: tags, manifests, and blob bytes split into ``unique_bytes`` (blobs only
    this repository references) and ``shared_bytes`` (blobs other repositories reference too);
    ``total_bytes`` = both. Sorted by total_bytes, largest first."""
    import pandas as pd

    per_repo = {name: _repo_blobs(r) for name, r in inventory.repositories.items()}
    refcount: dict[str, int] = {}
    for blobs in per_repo.values():
        for d in blobs:
            refcount[d] = refcount.get(d, 0) + 1
    rows = []
    for name, r in inventory.repositories.items():
        blobs = per_repo[name]
        unique = sum(s for d, s in blobs.items() if refcount[d] == 1)
        shared = sum(s for d, s in blobs.items() if refcount[d] > 1)
        rows.append({"repository": name, "tags": len(r.tags), "manifests": len(r.manifests),
                     "unique_bytes": unique, "shared_bytes": shared, "total_bytes": unique + shared})
    df = pd.DataFrame(rows, columns=LOGICAL_COLUMNS)
    if not df.empty:
        df = df.sort_values(["total_bytes", "repository"], ascending=[False, True], ignore_index=True)
    return df.astype({c: "int64" for c in LOGICAL_COLUMNS[1:]})


def deduplicated_bytes(inventory) -> int:
    """Bytes of all distinct blobs (and manifests) the registry's tags reach: what the storage
    would hold after a garbage-collect."""
    seen: dict[str, int] = {}
    for r in inventory.repositories.values():
        seen.update(_repo_blobs(r))
    return sum(seen.values())


def image_counts(inventory) -> tuple[int, int]:
    """``(images, manifests)``: tags across repositories, distinct manifests per repository."""
    return inventory.tag_count, sum(len(r.manifests) for r in inventory.repositories.values())


# --------------------------------------------------------------------------- pull latency


def measure_pull_latency(client, repository: str, tag: str) -> float:
    """Seconds to GET ``repository:tag``'s manifest (by tag, so no digest cache answers) and,
    for an image, its config blob. Duck-typed: needs ``get_manifest(repo, ref)`` and
    ``get_blob(repo, digest)`` (or ``get_blob_stream``)."""
    t0 = time.perf_counter()
    m = client.get_manifest(repository, tag)
    cfg = getattr(m, "config", None)
    if cfg is not None:
        if hasattr(client, "get_blob"):
            client.get_blob(repository, cfg.digest)
        else:
            stream = client.get_blob_stream(repository, cfg.digest)
            for _ in stream:
                pass
    return time.perf_counter() - t0


def pick_pull_samples(inventory, n: int = 3) -> list[tuple[str, str]]:
    """Up to ``n`` ``(repository, tag)`` pairs of the smallest single-platform images (one per
    repository), the cheapest probes for :func:`measure_pull_latency`."""
    best: list[tuple[int, str, str]] = []
    for name, r in inventory.repositories.items():
        cands = []
        for tag, d in r.tags.items():
            m = r.manifests.get(d)
            if m is not None and m.kind == "image" and m.config_digest:
                cfg_size = next((b.size for b in m.blobs if b.digest == m.config_digest), 0)
                cands.append((m.size + cfg_size, name, tag))
        if cands:
            best.append(min(cands))
    best.sort()
    return [(repo, tag) for _, repo, tag in best[:n]]


# =========================================================================== thresholds


@dataclass(frozen=True, slots=True)
class Thresholds:
    warn: float = 0.80
    critical: float = 0.90
    hysteresis: float = 0.02

    def __post_init__(self):
        if not 0 < self.warn < self.critical <= 1:
            raise ValueError(f"thresholds: need 0 < warn ({self.warn}) < critical ({self.critical}) <= 1")
        if not 0 <= self.hysteresis < self.warn:
            raise ValueError(f"thresholds: hysteresis {self.hysteresis} must be >= 0 and below warn")

    @classmethod
    def from_config(cls, cc, hysteresis: float = 0.02) -> "Thresholds":
        """From a ``config.CapacityConfig`` (or None for the defaults)."""
        if cc is None:
            return cls(hysteresis=hysteresis)
        return cls(warn=cc.warn, critical=cc.critical, hysteresis=hysteresis)


def classify(ratio: float, t: Thresholds) -> str:
    """The level of a ratio, without hysteresis."""
    if ratio >= t.critical:
        return "critical"
    if ratio >= t.warn:
        return "warn"
    return "ok"


def next_level(ratio: float, t: Thresholds, previous: str) -> str:
    """The level after ``previous`` for ``ratio``: up at the thresholds, down only below the
    threshold minus the hysteresis."""
    up = classify(ratio, t)
    if _RANK[up] >= _RANK[previous]:
        return up
    sticky = classify(round(ratio + t.hysteresis, 9), t)   # the level inside the hysteresis band
    return LEVELS[max(_RANK[up], min(_RANK[previous], _RANK[sticky]))]


@dataclass(slots=True)
class CapacityState:
    registry: str
    level: str = "ok"
    ratio: float | None = None
    since: str | None = None              # ISO time the current level was entered
    updated: str | None = None            # ISO time of the last evaluation
    last_alert_level: str | None = None   # warn | critical | resolved
    last_alert_at: str | None = None

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, registry: str, d: dict) -> "CapacityState":
        level = d.get("level", "ok")
        if level not in _RANK:
            level = "ok"
        ratio = d.get("ratio")
        return cls(registry=registry, level=level,
                   ratio=float(ratio) if isinstance(ratio, (int, float)) else None,
                   since=d.get("since"), updated=d.get("updated"),
                   last_alert_level=d.get("last_alert_level"), last_alert_at=d.get("last_alert_at"))


@dataclass(frozen=True, slots=True)
class Alert:
    registry: str
    level: str                      # "warn" | "critical" | "resolved"
    previous_level: str             # "ok" | "warn" | "critical"
    ratio: float
    used_bytes: int | None
    capacity_bytes: int | None
    days_to_full: float | None
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    warn: float = 0.80
    critical: float = 0.90
    repeat: bool = False            # a re-assertion of an unchanged level (reassert_after)

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
    size = (f" ({human_bytes(a.used_bytes)} of {human_bytes(a.capacity_bytes)})"
            if a.used_bytes is not None and a.capacity_bytes else "")
    eta = f"; about {a.days_to_full:.1f} days until full at the current growth" \
        if a.days_to_full is not None and a.level != "resolved" else ""
    r = a.registry
    if a.level == "resolved":
        return (f"[RESOLVED] registry {r}: storage usage back to {_pct(a.ratio)}{size}, below the "
                f"warn threshold {_pct(a.warn)} (was {a.previous_level})")
    head = f"[{a.level.upper()}] registry {r}: storage usage {_pct(a.ratio)}{size}"
    thr = a.critical if a.level == "critical" else a.warn
    if a.repeat:
        return f"{head}, still at or above the {a.level} threshold {_pct(thr)}{eta}"
    if a.kind == "de-escalation":
        return f"{head}, down from critical (critical threshold {_pct(a.critical)}){eta}"
    return f"{head}, at or above the {a.level} threshold {_pct(thr)}{eta}"


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def evaluate(ratio: float | None, thresholds: Thresholds, previous_state: CapacityState | None, *,
             registry: str | None = None, used_bytes: int | None = None, capacity_bytes: int | None = None,
             days_to_full: float | None = None, now: datetime | None = None,
             reassert_after: timedelta | None = None) -> tuple[CapacityState, Alert | None]:
    """Advance the state machine by one measurement. Returns the new state (not saved) and the
    alert to send, or None. ``ratio=None`` (no capacity known) changes nothing and alerts nothing."""
    now = now or datetime.now(timezone.utc)
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
    alert = Alert(registry=prev.registry, level=alert_level, previous_level=old, ratio=float(ratio),
                  used_bytes=used_bytes, capacity_bytes=capacity_bytes, days_to_full=days_to_full,
                  message="", at=now, warn=thresholds.warn, critical=thresholds.critical, repeat=repeat)
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


# =========================================================================== delivery


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
        fields.append({"title": "Used / capacity", "short": True,
                       "value": f"{human_bytes(alert.used_bytes)} / {human_bytes(alert.capacity_bytes)}"})
    if alert.days_to_full is not None and alert.level != "resolved":
        fields.append({"title": "Days to full", "value": f"{alert.days_to_full:.1f}", "short": True})
    return {"text": alert.message,
            "attachments": [{"color": color, "fallback": alert.message, "fields": fields,
                             "footer": "regkeeper capacity", "ts": int(alert.at.timestamp())}]}


def alertmanager_payload(alert: Alert, firing_ttl: timedelta = timedelta(hours=24)) -> list[dict]:
    """Alertmanager v2 ``POST /api/v2/alerts`` body: one entry per severity. The current level
    fires (``startsAt`` now, ``endsAt`` now + ``firing_ttl``: Alertmanager resolves an alert by
    itself once endsAt passes unless it is sent again, see ``reassert_after``); the other
    severity, and both on a resolve, get ``endsAt`` = now, which ends them."""
    now = _iso(alert.at)
    active = None if alert.level == "resolved" else alert.level
    ann = {
        "summary": alert.message,
        "description": (f"Registry {alert.registry} storage usage is {_pct(alert.ratio)} "
                        f"(warn {_pct(alert.warn)}, critical {_pct(alert.critical)})."),
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
        entry = {"labels": {"alertname": ALERT_NAME, "severity": _severity(level),
                            "registry": alert.registry, "source": "regkeeper"},
                 "annotations": dict(ann)}
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
    resource = {"prefect.resource.id": f"regkeeper.registry.{alert.registry}",
                "prefect.resource.name": alert.registry,
                "regkeeper.registry": alert.registry}
    payload = {"registry": alert.registry, "level": alert.level, "previous_level": alert.previous_level,
               "kind": alert.kind, "ratio": alert.ratio, "used_bytes": alert.used_bytes,
               "capacity_bytes": alert.capacity_bytes, "days_to_full": alert.days_to_full,
               "warn": alert.warn, "critical": alert.critical, "message": alert.message,
               "at": _iso(alert.at)}
    return alert.event_name, resource, payload


def _session(retries: int, backoff: float) -> requests.Session:
    return retry_session(retries, backoff, frozenset({"POST"}))


def alertmanager_url(url: str) -> str:
    """``http://am:9093`` -> ``http://am:9093/api/v2/alerts`` (a full path is kept)."""
    u = url.rstrip("/")
    return u if u.endswith("/api/v2/alerts") else f"{u}/api/v2/alerts"


def send_webhook(url: str, alert: Alert, fmt: str = "slack", timeout: float = 10, *,
                 verify: bool | str = True, retries: int = 3, backoff: float = 0.5,
                 firing_ttl: timedelta = timedelta(hours=24), session: requests.Session | None = None) -> int:
    """POST ``alert`` to a Slack-compatible incoming webhook (``fmt="slack"``) or to an
    Alertmanager (``fmt="alertmanager"``; give its base URL or .../api/v2/alerts).

    Connection errors, 429 and 5xx are retried with backoff (urllib3 Retry). Returns the HTTP
    status; raises NotifyError otherwise. The URL (which may hold a token) is never logged or put
    in an error: only ``scheme://host/…``."""
    if fmt == "slack":
        target, body = url, slack_payload(alert)
    elif fmt == "alertmanager":
        target, body = alertmanager_url(url), alertmanager_payload(alert, firing_ttl)
    else:
        raise ValueError(f"capacity.notify.format: unknown format {fmt!r} (slack | alertmanager)")
    shown = redact_url(url)
    own = session is None
    s = session or _session(retries, backoff)
    try:
        resp = s.post(target, json=body, timeout=timeout, verify=verify)
    except requests.RequestException as e:
        raise NotifyError(f"webhook {shown}: {alert.level} alert for registry {alert.registry} not "
                          f"delivered: {type(e).__name__}") from None
    finally:
        if own:
            s.close()
    if resp.status_code >= 300:
        raise NotifyError(f"webhook {shown}: {alert.level} alert for registry {alert.registry} "
                          f"refused: HTTP {resp.status_code} {scrub(resp.text[:200].strip())}")
    log.info("capacity: %s alert for registry %s sent to %s (%s, HTTP %s)", alert.level,
             alert.registry, shown, fmt, resp.status_code)
    return resp.status_code


@dataclass(frozen=True, slots=True)
class Delivery:
    target: str            # redacted URL
    fmt: str
    ok: bool
    status: int | None
    error: str | None = None


def _target(t) -> tuple[str, str]:
    if isinstance(t, (tuple, list)):
        return t[0], (t[1] if len(t) > 1 else "slack")
    url = t.webhook.get() if hasattr(t.webhook, "get") else t.webhook
    return url, getattr(t, "format", "slack")


def notify_and_commit(check: "CapacityCheck", targets, store: StateStore, *, timeout: float = 10,
                      verify: bool | str = True, retries: int = 3) -> list[Delivery]:
    """Send ``check.alert`` (if any) to every target (``config.NotifyConfig`` objects or
    ``(url, fmt)`` pairs), then save ``check.state``. When a delivery fails the state is *not*
    saved, so the next run sends the alert again (at-least-once)."""
    out: list[Delivery] = []
    if check.alert is not None:
        for t in targets:
            url, fmt = _target(t)
            try:
                status = send_webhook(url, check.alert, fmt, timeout, verify=verify, retries=retries)
                out.append(Delivery(redact_url(url), fmt, True, status))
            except NotifyError as e:
                log.warning("%s", e)
                out.append(Delivery(redact_url(url), fmt, False, None, str(e)))
    if all(d.ok for d in out):
        store.save(check.state)
    return out


# =========================================================================== history + forecast

HISTORY_COLUMNS = ["timestamp", "registry", "bytes_used", "capacity_bytes"]


class UsageHistory:
    """Append-only CSV of measurements (reports/capacity/history.csv)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, registry: str, bytes_used: int, capacity_bytes: int | None,
               timestamp: datetime | None = None) -> None:
        ts = timestamp or datetime.now(timezone.utc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(HISTORY_COLUMNS)
            w.writerow([_iso(ts), registry, int(bytes_used), "" if capacity_bytes is None else int(capacity_bytes)])

    def load(self, registry: str | None = None):
        """DataFrame with tz-aware UTC ``timestamp``, sorted by time; one registry if given."""
        import pandas as pd
        if not self.path.exists():
            return pd.DataFrame({"timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                                 "registry": pd.Series(dtype=str), "bytes_used": pd.Series(dtype="int64"),
                                 "capacity_bytes": pd.Series(dtype="float64")})
        df = pd.read_csv(self.path, dtype={"registry": str})
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
        if registry is not None:
            df = df[df["registry"] == registry]
        return df.sort_values("timestamp", ignore_index=True)

    def prune(self, keep: timedelta = timedelta(days=90), now: datetime | None = None) -> int:
        """Drop rows older than ``keep`` (atomic rewrite). Returns rows dropped."""
        if not self.path.exists():
            return 0
        df = self.load()
        cutoff = (now or datetime.now(timezone.utc)) - keep
        kept = df[df["timestamp"] >= cutoff]
        dropped = len(df) - len(kept)
        if dropped:
            kept = kept.copy()
            kept["timestamp"] = kept["timestamp"].map(_iso)
            cap = kept["capacity_bytes"]
            kept["capacity_bytes"] = [("" if v != v else int(v)) for v in cap]   # NaN -> empty
            _atomic_write(self.path, kept[HISTORY_COLUMNS].to_csv(index=False))
        return dropped


@dataclass(frozen=True, slots=True)
class Forecast:
    slope_bytes_per_day: float | None
    days_to_warn: float | None
    days_to_critical: float | None
    days_to_full: float | None
    points_used: int
    method: str                      # "linear-least-squares" | "insufficient-data"
    reason: str | None = None        # why days are None
    current_bytes: int | None = None
    capacity_bytes: int | None = None
    as_of: datetime | None = None    # time of the latest point the days count from


MAX_FORECAST_DAYS = 3650.0


def forecast(df, capacity_bytes: int | None = None, warn: float = 0.8, critical: float = 0.9,
             window: timedelta = timedelta(days=14), *, registry: str | None = None,
             min_points: int = 3, min_span: timedelta = timedelta(hours=1)) -> Forecast:
    """Least-squares line (numpy.polyfit) through the usage of the last ``window`` of history.

    Days count from the latest point: ``(threshold - latest bytes) / slope``; 0 when already at
    or past the threshold; None when the trend is flat or shrinking (< 1 byte/day), further than
    10 years, or there is too little data (fewer than ``min_points`` points or a span below
    ``min_span``: ``method`` is then "insufficient-data"). ``capacity_bytes`` defaults to the
    latest capacity recorded in the history."""
    import numpy as np
    import pandas as pd

    d = df
    if registry is not None and "registry" in d.columns:
        d = d[d["registry"] == registry]
    d = d.dropna(subset=["timestamp", "bytes_used"])
    if d.empty:
        return Forecast(None, None, None, None, 0, "insufficient-data", "no history", capacity_bytes=capacity_bytes)
    ts = pd.to_datetime(d["timestamp"], utc=True)
    d = d.assign(timestamp=ts).sort_values("timestamp")
    if capacity_bytes is None and "capacity_bytes" in d.columns:
        caps = d["capacity_bytes"].dropna()
        capacity_bytes = int(caps.iloc[-1]) if len(caps) else None
    last_ts = d["timestamp"].iloc[-1]
    d = d[d["timestamp"] >= last_ts - pd.Timedelta(window)]
    n = len(d)
    current = int(d["bytes_used"].iloc[-1])
    as_of = last_ts.to_pydatetime()
    span = d["timestamp"].iloc[-1] - d["timestamp"].iloc[0]
    if n < min_points or span < pd.Timedelta(min_span):
        return Forecast(None, None, None, None, n, "insufficient-data",
                        f"{n} point(s) over {span} (need {min_points} over {min_span})",
                        current, capacity_bytes, as_of)
    x = (d["timestamp"] - d["timestamp"].iloc[0]).dt.total_seconds().to_numpy() / 86400.0
    y = d["bytes_used"].to_numpy(dtype=float)
    slope = float(np.polyfit(x, y, 1)[0])
    growing = slope >= 1.0
    reason = None if growing else "usage is flat or shrinking"

    def days(ratio: float) -> float | None:
        if capacity_bytes is None:
            return None
        target = ratio * capacity_bytes
        if current >= target:
            return 0.0
        if not growing:
            return None
        v = (target - current) / slope
        return round(v, 3) if v <= MAX_FORECAST_DAYS else None

    if capacity_bytes is None and reason is None:
        reason = "no capacity known"
    return Forecast(slope, days(warn), days(critical), days(1.0), n, "linear-least-squares", reason,
                    current, capacity_bytes, as_of)


def render_usage_svg(df, capacity_bytes: int | None = None, warn: float = 0.8, critical: float = 0.9, *,
                     registry: str | None = None, width: int = 640, height: int = 200,
                     title: str | None = None) -> str:
    """A small inline SVG line chart of ``bytes_used`` over time with the warn / critical /
    capacity lines (no plotting library), for the HTML report."""
    import pandas as pd

    d = df
    if registry is not None and "registry" in d.columns:
        d = d[d["registry"] == registry]
    d = d.dropna(subset=["timestamp", "bytes_used"])
    esc = html.escape
    title = title or (f"Storage usage: {registry}" if registry else "Storage usage")
    pad_l, pad_r, pad_t, pad_b = 70, 70, 22, 24
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
             f'font-family="sans-serif" font-size="11">',
             f"<title>{esc(title)}</title>",
             f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
             f'<text x="{pad_l}" y="14" font-weight="bold">{esc(title)}</text>']
    if d.empty:
        parts.append(f'<text x="{pad_l + pw / 2:.1f}" y="{pad_t + ph / 2:.1f}" text-anchor="middle" '
                     f'fill="#888">no history yet</text></svg>')
        return "".join(parts)
    ts = pd.to_datetime(d["timestamp"], utc=True)
    d = d.assign(timestamp=ts).sort_values("timestamp")
    t0, t1 = d["timestamp"].iloc[0], d["timestamp"].iloc[-1]
    tspan = max((t1 - t0).total_seconds(), 1.0)
    ymax_data = float(d["bytes_used"].max())
    ymax = max(ymax_data, float(capacity_bytes or 0)) * 1.05 or 1.0

    def px(t) -> float:
        return pad_l + (t - t0).total_seconds() / tspan * pw

    def py(v: float) -> float:
        return pad_t + ph - v / ymax * ph

    if capacity_bytes:
        for cls, ratio, color in (("capacity", 1.0, "#555"), ("critical", critical, "#d00000"),
                                  ("warn", warn, "#e0a800")):
            y = py(ratio * capacity_bytes)
            parts.append(f'<line class="threshold {cls}" x1="{pad_l}" x2="{pad_l + pw}" y1="{y:.1f}" '
                         f'y2="{y:.1f}" stroke="{color}" stroke-dasharray="4 3"/>')
            label = "capacity" if cls == "capacity" else f"{cls} {ratio * 100:.0f}%"
            parts.append(f'<text x="{pad_l + pw + 4}" y="{y + 4:.1f}" fill="{color}">{esc(label)}</text>')
    pts = " ".join(f"{px(t):.1f},{py(float(v)):.1f}" for t, v in zip(d["timestamp"], d["bytes_used"]))
    parts.append(f'<polyline class="usage" fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{esc(human_bytes(ymax))}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + ph}" text-anchor="end">0</text>')
    fmt = "%Y-%m-%d %H:%M"
    parts.append(f'<text x="{pad_l}" y="{height - 6}">{esc(t0.strftime(fmt))}</text>')
    parts.append(f'<text x="{pad_l + pw}" y="{height - 6}" text-anchor="end">{esc(t1.strftime(fmt))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# =========================================================================== one registry, one run


@dataclass(slots=True)
class CapacityCheck:
    registry: str
    usage: StorageUsage | None
    capacity_bytes: int | None
    capacity_source: str              # capacityBytes | filesystem | none
    ratio: float | None
    note: str | None                  # why there is no ratio
    state: CapacityState              # the new state (saved by notify_and_commit / store.save)
    previous_state: CapacityState
    alert: Alert | None
    forecast: Forecast | None

    @property
    def level(self) -> str:
        return self.state.level


def check_capacity(registry: str, usage: StorageUsage | None, *, capacity_bytes: int | None = None,
                   thresholds: Thresholds = Thresholds(), store: StateStore,
                   history: UsageHistory | None = None, window: timedelta = timedelta(days=14),
                   now: datetime | None = None, reassert_after: timedelta | None = None) -> CapacityCheck:
    """Ratio, history row, forecast and state transition for one registry. Does not send or
    save: call :func:`notify_and_commit` (or ``store.save(check.state)``) afterwards."""
    now = now or datetime.now(timezone.utc)
    cap, src, note = resolve_capacity(usage, capacity_bytes)
    ratio = usage.bytes_used / cap if usage is not None and cap else None
    fc = None
    if usage is not None and history is not None:
        history.append(registry, usage.bytes_used, cap, now)
        fc = forecast(history.load(registry), cap, thresholds.warn, thresholds.critical, window)
    previous = store.load(registry)
    state, alert = evaluate(ratio, thresholds, previous, used_bytes=usage.bytes_used if usage else None,
                            capacity_bytes=cap, days_to_full=fc.days_to_full if fc else None, now=now,
                            reassert_after=reassert_after)
    return CapacityCheck(registry, usage, cap, src, ratio, note, state, previous, alert, fc)
