"""Prometheus metrics for regkeeper runs, pushed to a Pushgateway.

Every run builds its own :class:`RunMetrics` (a fresh ``CollectorRegistry``, never the global
one), sets what it measured, calls :meth:`RunMetrics.finish` and :meth:`RunMetrics.push`.

Push semantics (why a failed run never overwrites the last success)
-------------------------------------------------------------------
Metrics are pushed with ``job="regkeeper"`` and the grouping key ``{flow, registry}`` using
**POST** (``pushadd_to_gateway``): the Pushgateway replaces only the metric families present in
the push and keeps every other family of the group. Metric families are created lazily, so a
family the run did not set is not in the push at all:

- a successful run sets ``regkeeper_last_success_timestamp_seconds``;
- a failed run never creates that family, so the value from the last success survives, while
  ``regkeeper_run_success`` (0) and ``regkeeper_last_run_timestamp_seconds`` are replaced.

(A PUT would have replaced the whole group and erased the last success; a separate grouping key
would have added a stray label to the series the alert rules read.) The flip side of POST: a
family a run does not set keeps its last pushed value, so :meth:`RunMetrics.finish` always sets
the per-run counters every flow has (``regkeeper_items_failed``) to keep them from going stale.

The Pushgateway adds the grouping labels ``flow`` and ``registry`` (and ``job``) to every series;
Prometheus must scrape it with ``honor_labels: true`` (see deployments/monitoring/README.md).
"""

import logging
import time
from collections.abc import Iterable

import requests
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.exposition import delete_from_gateway, pushadd_to_gateway

from .errors import MetricsPushError
from .util import redact_url, retry_session, scrub

log = logging.getLogger(__name__)

JOB = "regkeeper"

# Pull latency of one small manifest + its config blob: milliseconds on a LAN, seconds when bad.
PULL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# name -> (type, help, label names). The names are a contract (seed, alert rules, dashboard).
SPEC: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "registry_storage_bytes_total": (
        "gauge",
        "Physical bytes the registry's storage uses (regular files / S3 objects).",
        ("registry",),
    ),
    "registry_storage_capacity_bytes": (
        "gauge",
        "Configured capacity (capacityBytes) or the filesystem size, in bytes.",
        ("registry",),
    ),
    "registry_storage_usage_ratio": (
        "gauge",
        "registry_storage_bytes_total / registry_storage_capacity_bytes.",
        ("registry",),
    ),
    "registry_storage_files": (
        "gauge",
        "Regular files (filesystem) or objects (S3) in the registry's storage.",
        ("registry",),
    ),
    "registry_storage_days_to_full": (
        "gauge",
        "Linear forecast of days until the storage is full (absent when not growing).",
        ("registry",),
    ),
    "registry_quarantine_bytes": (
        "gauge",
        "Bytes held in the quarantine (deleted, undoable, not yet reclaimed): manifests + blobs.",
        ("registry",),
    ),
    "registry_image_count": (
        "gauge",
        "Images in the registry (tags across all repositories).",
        ("registry",),
    ),
    "registry_manifest_count": (
        "gauge",
        "Distinct manifests per repository, summed over repositories.",
        ("registry",),
    ),
    "registry_repository_count": ("gauge", "Repositories in the registry.", ("registry",)),
    "registry_pull_duration_seconds": (
        "histogram",
        "Time to GET a small manifest and its config blob from the registry.",
        ("registry",),
    ),
    "regkeeper_last_success_timestamp_seconds": (
        "gauge",
        "Unix time the flow last finished successfully for this registry.",
        ("flow", "registry"),
    ),
    "regkeeper_last_run_timestamp_seconds": (
        "gauge",
        "Unix time the flow last finished (success or failure) for this registry.",
        ("flow", "registry"),
    ),
    "regkeeper_run_success": (
        "gauge",
        "1 if the flow's last run for this registry succeeded, 0 if it failed.",
        ("flow", "registry"),
    ),
    "regkeeper_run_duration_seconds": (
        "gauge",
        "Wall time of the flow's last run for this registry.",
        ("flow", "registry"),
    ),
    "regkeeper_bytes_reclaimed": (
        "gauge",
        "Bytes the last run deleted or reclaimed (gc/expire).",
        ("flow", "registry"),
    ),
    "regkeeper_items_deleted": ("gauge", "Manifests the last run deleted (gc/expire).", ("flow", "registry")),
    "regkeeper_items_replicated": (
        "gauge",
        "Images the last replicate run copied from this registry to a target.",
        ("registry", "target"),
    ),
    "regkeeper_items_failed": (
        "gauge",
        "Items (repositories, images, tags) the last run failed on.",
        ("flow", "registry"),
    ),
    "registry_read_only": (
        "gauge",
        "1 when the registry refused a write check (a blob upload), 0 when it took it.",
        ("registry",),
    ),
    "registry_read_only_unexpected": (
        "gauge",
        "1 when the registry refuses writes and no live regkeeper read-only window "
        "(garbage-collect) explains it.",
        ("registry",),
    ),
    "regkeeper_readonly_recovered_total": (
        "gauge",
        "Read-only windows left open by runs that died, closed (readWrite run) by a later "
        "run; a count kept in the state directory.",
        ("registry",),
    ),
    "regkeeper_replication_lag_tags": (
        "gauge",
        "Tags present on the source and missing or different on the target after the run.",
        ("source", "target"),
    ),
}


class RunMetrics:
    """The metrics of one run of one flow for one registry, in a fresh CollectorRegistry."""

    def __init__(self, flow: str, registry: str, *, buckets: Iterable[float] = PULL_BUCKETS):
        self.flow = flow
        self.registry = registry
        self.collector = CollectorRegistry(auto_describe=True)
        self._buckets = tuple(buckets)
        self._metrics: dict[str, Gauge | Histogram] = {}
        self._started = time.time()
        self.finished: bool | None = None

    def __repr__(self) -> str:
        return f"RunMetrics(flow={self.flow!r}, registry={self.registry!r}, families={sorted(self._metrics)})"

    # ------------------------------------------------------------------ families (lazy)

    def metric(self, name: str):
        """The metric family ``name`` (created and registered on first use)."""
        m = self._metrics.get(name)
        if m is None:
            kind, doc, labels = SPEC[name]
            if kind == "histogram":
                m = Histogram(name, doc, labels, registry=self.collector, buckets=self._buckets)
            else:
                m = Gauge(name, doc, labels, registry=self.collector)
            self._metrics[name] = m
        return m

    def has(self, name: str) -> bool:
        return name in self._metrics

    def _run_labels(self) -> dict:
        return {"flow": self.flow, "registry": self.registry}

    # ------------------------------------------------------------------ setters

    def set_storage(
        self,
        used_bytes: int,
        capacity_bytes: int | None = None,
        ratio: float | None = None,
        files: int | None = None,
    ) -> None:
        r = self.registry
        self.metric("registry_storage_bytes_total").labels(registry=r).set(used_bytes)
        if capacity_bytes:
            self.metric("registry_storage_capacity_bytes").labels(registry=r).set(capacity_bytes)
            if ratio is None:
                ratio = used_bytes / capacity_bytes
        if ratio is not None:
            self.metric("registry_storage_usage_ratio").labels(registry=r).set(ratio)
        if files is not None:
            self.metric("registry_storage_files").labels(registry=r).set(files)

    def set_days_to_full(self, days: float | None) -> None:
        """Only set when the forecast has a value; a missing series means 'not filling up'."""
        if days is not None:
            self.metric("registry_storage_days_to_full").labels(registry=self.registry).set(days)

    def set_image_count(
        self, images: int, manifests: int | None = None, repositories: int | None = None
    ) -> None:
        r = self.registry
        self.metric("registry_image_count").labels(registry=r).set(images)
        if manifests is not None:
            self.metric("registry_manifest_count").labels(registry=r).set(manifests)
        if repositories is not None:
            self.metric("registry_repository_count").labels(registry=r).set(repositories)

    def set_quarantine_bytes(self, n: int) -> None:
        self.metric("registry_quarantine_bytes").labels(registry=self.registry).set(n)

    def observe_pull(self, seconds: float) -> None:
        self.metric("registry_pull_duration_seconds").labels(registry=self.registry).observe(seconds)

    def set_bytes_reclaimed(self, n: int) -> None:
        self.metric("regkeeper_bytes_reclaimed").labels(**self._run_labels()).set(n)

    def set_items_deleted(self, n: int) -> None:
        self.metric("regkeeper_items_deleted").labels(**self._run_labels()).set(n)

    def set_items_failed(self, n: int) -> None:
        self.metric("regkeeper_items_failed").labels(**self._run_labels()).set(n)

    def set_items_replicated(self, target: str, n: int) -> None:
        self.metric("regkeeper_items_replicated").labels(registry=self.registry, target=target).set(n)

    def set_read_only(self, read_only: bool, unexpected: bool) -> None:
        r = self.registry
        self.metric("registry_read_only").labels(registry=r).set(1 if read_only else 0)
        self.metric("registry_read_only_unexpected").labels(registry=r).set(1 if unexpected else 0)

    def set_replication_lag(self, target: str, tags: int, source: str | None = None) -> None:
        self.metric("regkeeper_replication_lag_tags").labels(
            source=source or self.registry, target=target
        ).set(tags)

    def finish(self, success: bool, now: float | None = None) -> None:
        """Record the run's outcome. ``regkeeper_last_success_timestamp_seconds`` is set only
        when ``success``; the failure path never creates that family (see module doc)."""
        now = time.time() if now is None else now
        lab = self._run_labels()
        self.metric("regkeeper_last_run_timestamp_seconds").labels(**lab).set(now)
        self.metric("regkeeper_run_success").labels(**lab).set(1 if success else 0)
        self.metric("regkeeper_run_duration_seconds").labels(**lab).set(max(0.0, now - self._started))
        if not self.has("regkeeper_items_failed"):
            self.set_items_failed(0)
        if success:
            self.metric("regkeeper_last_success_timestamp_seconds").labels(**lab).set(now)
        self.finished = success

    # ------------------------------------------------------------------ output

    def text(self) -> str:
        return render_text(self.collector)

    def grouping_key(self) -> dict:
        return {"flow": self.flow, "registry": self.registry}

    def push(self, gateway: str, *, timeout: float = 10, verify: bool | str = True, retries: int = 3) -> None:
        """POST (push-add) this run's families to ``gateway`` under job="regkeeper",
        grouping key {flow, registry}. Raises MetricsPushError (URL redacted)."""
        push_metrics(
            gateway,
            self.collector,
            flow=self.flow,
            registry=self.registry,
            timeout=timeout,
            verify=verify,
            retries=retries,
        )


def render_text(registry: CollectorRegistry) -> str:
    """The Prometheus text exposition of a collector registry (for reports and artifacts)."""
    return generate_latest(registry).decode("utf-8")


def _requests_handler(verify: bool | str, retries: int):
    """A prometheus_client push handler on a requests Session: explicit ``verify``, urllib3
    retries on connection errors and 5xx, errors that never show the full URL."""

    def handler(url, method, timeout, headers, data):
        def do():
            with retry_session(retries, 0.3, frozenset({"PUT", "POST", "DELETE"})) as s:
                try:
                    resp = s.request(
                        method, url, data=data, headers=dict(headers), timeout=timeout, verify=verify
                    )
                except requests.RequestException as e:
                    raise MetricsPushError(
                        f"pushgateway {redact_url(url)}: {method} failed: {type(e).__name__}"
                    ) from None
            if resp.status_code >= 400:
                body = scrub(resp.text[:300].strip())
                raise MetricsPushError(
                    f"pushgateway {redact_url(url)}: {method} returned HTTP {resp.status_code}: {body}"
                )

        return do

    return handler


def push_metrics(
    gateway: str,
    collector: CollectorRegistry,
    *,
    flow: str,
    registry: str,
    timeout: float = 10,
    verify: bool | str = True,
    retries: int = 3,
) -> None:
    """Push-add (HTTP POST) ``collector`` to the Pushgateway at ``gateway``."""
    if not gateway:
        raise MetricsPushError("capacity.pushgateway: no Pushgateway URL configured")
    log.info("pushing metrics to %s (job=%s flow=%s registry=%s)", redact_url(gateway), JOB, flow, registry)
    pushadd_to_gateway(
        gateway,
        job=JOB,
        registry=collector,
        grouping_key={"flow": flow, "registry": registry},
        timeout=timeout,
        handler=_requests_handler(verify, retries),
    )


def delete_metrics(
    gateway: str, *, flow: str, registry: str, timeout: float = 10, verify: bool | str = True
) -> None:
    """Delete the group {flow, registry} from the Pushgateway (e.g. a registry was removed)."""
    delete_from_gateway(
        gateway,
        job=JOB,
        grouping_key={"flow": flow, "registry": registry},
        timeout=timeout,
        handler=_requests_handler(verify, 1),
    )
