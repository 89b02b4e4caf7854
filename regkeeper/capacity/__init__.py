"""Capacity: measure storage, classify it against thresholds, alert once per crossing, forecast.

Prefect-free. The capacity flow composes these per registry:

    usage = measure_storage(rc)                                   # physical: filesystem / S3
    check = check_capacity(rc.name, usage, capacity_bytes=rc.capacity_bytes, thresholds=...,
                           store=StateStore(dir), history=UsageHistory(dir / "history.csv"))
    notify_and_commit(check, targets, store)                      # webhooks, then persist state
    metrics.set_storage(...); metrics.set_days_to_full(check.forecast.days_to_full)

Where things live:
  measure.py     physical usage (filesystem walk, S3 listing) and what 100% is (resolve_capacity)
  logical.py     per-repository logical usage, deduplicated bytes, image counts, pull-latency probes
  thresholds.py  levels ok < warn < critical, 80% / 90%, hysteresis (classify, next_level)
  state.py       the alerting state machine (evaluate) and its per-registry state file
  alerts.py      the Alert, its message, Slack / Alertmanager / Prefect-event payloads
  notify.py      webhook delivery and notify_and_commit (state saved only once delivered)
  history.py     the usage-history CSV and the days-to-full forecast
  chart.py       the SVG usage chart of the HTML report
  report.py      what a run reports: headline, figures, the usage-history table, the chart
  check.py       one registry, one run: check_capacity
  writecheck.py  does the registry take writes (start + cancel a blob upload), the read-only
                 state per registry (alert once, resolve when writable again)
  readonly.py    the read-only alerts (RegistryReadOnly, RegistryReadOnlyRecovered) and their
                 Slack / Alertmanager / Prefect-event payloads
"""

from .alerts import (
    ALERT_NAME,
    EVENT_PREFIX,
    Alert,
    alert_message,
    alertmanager_payload,
    event_payload,
    slack_payload,
)
from .chart import render_usage_svg
from .check import CapacityCheck, check_capacity
from .history import (
    HISTORY_COLUMNS,
    MAX_FORECAST_DAYS,
    Forecast,
    UsageHistory,
    forecast,
)
from .logical import (
    LOGICAL_COLUMNS,
    deduplicated_bytes,
    image_counts,
    logical_usage,
    measure_pull_latency,
    pick_pull_samples,
)
from .measure import (
    CapacityError,
    StorageUsage,
    filesystem_usage,
    measure_storage,
    resolve_capacity,
    s3_usage,
    storage_usage,
)
from .notify import (
    Delivery,
    NotifyError,
    alertmanager_url,
    notify_and_commit,
    post_alert,
    send_webhook,
    target_of,
)
from .readonly import READONLY_ALERT, RECOVERED_ALERT, ReadOnlyAlert, notify_readonly
from .state import CapacityState, StateStore, evaluate
from .thresholds import LEVELS, Thresholds, classify, next_level
from .timestamps import _iso, _parse_iso
from .writecheck import (
    ReadOnlyCheck,
    ReadOnlyState,
    ReadOnlyStore,
    WriteCheck,
    check_writes,
    evaluate_writes,
    read_only_check,
)

__all__ = [
    "ALERT_NAME",
    "EVENT_PREFIX",
    "READONLY_ALERT",
    "RECOVERED_ALERT",
    "ReadOnlyAlert",
    "ReadOnlyCheck",
    "ReadOnlyState",
    "ReadOnlyStore",
    "WriteCheck",
    "check_writes",
    "evaluate_writes",
    "read_only_check",
    "notify_readonly",
    "post_alert",
    "target_of",
    "HISTORY_COLUMNS",
    "LEVELS",
    "LOGICAL_COLUMNS",
    "MAX_FORECAST_DAYS",
    "Alert",
    "CapacityCheck",
    "CapacityError",
    "CapacityState",
    "Delivery",
    "Forecast",
    "NotifyError",
    "StateStore",
    "StorageUsage",
    "Thresholds",
    "UsageHistory",
    "_iso",
    "_parse_iso",
    "alert_message",
    "alertmanager_payload",
    "alertmanager_url",
    "check_capacity",
    "classify",
    "deduplicated_bytes",
    "evaluate",
    "event_payload",
    "filesystem_usage",
    "forecast",
    "image_counts",
    "logical_usage",
    "measure_pull_latency",
    "measure_storage",
    "next_level",
    "notify_and_commit",
    "pick_pull_samples",
    "render_usage_svg",
    "resolve_capacity",
    "s3_usage",
    "send_webhook",
    "slack_payload",
    "storage_usage",
]
