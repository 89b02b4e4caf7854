"""capacity: storage metrics, threshold alerts (80% warn / 90% critical), a days-to-full
forecast, and read-only detection (a registry that refuses writes alerts, unless a live
regkeeper garbage-collect window explains it). Every 5 minutes by default."""

from typing import Annotated, Optional

from prefect import flow
from pydantic import Field

from flows._prune import scan_registry
from flows.params import ConfigPath
from flows.runner import RegkeeperTaskRunner
from regkeeper import capacity as cap
from regkeeper.capacity.report import (
    HISTORY_COLUMNS,
    HISTORY_TABLE,
    history_rows,
    usage_chart_html,
    usage_report,
)
from regkeeper.config import CapacityConfig
from regkeeper.context import RunContext
from regkeeper.errors import RegkeeperError
from regkeeper.metrics import RunMetrics
from regkeeper.proxycache import read_cache
from regkeeper.report import Report
from regkeeper.util import human_bytes
from tasks.capacity import (
    check_read_only,
    count_tags,
    evaluate_and_alert,
    measure_storage,
    pull_latency,
    quarantine_bytes,
)
from tasks.common import logger, publish_report, reports_of, with_reports
from tasks.recovery import add_notes, begin_run


@flow(
    name="capacity",
    task_runner=RegkeeperTaskRunner(),
    log_prints=False,
    validate_parameters=True,
)
def capacity(
    registry: Annotated[
        Optional[str],
        Field(
            description="Registry name (default: every registry in mirrorRepositories with a url, "
            "and every proxy with its cache storage)"
        ),
    ] = None,
    logical_usage: Annotated[
        bool, Field(description="Also scan the inventory for per-repository logical usage and image counts")
    ] = True,
    dry_run: Annotated[
        bool, Field(description="Measure and report, but send no alert and record no history")
    ] = False,
    config_path: ConfigPath = None,
) -> dict:
    """Measure storage, push metrics, alert on threshold crossings, forecast days to full.

    Args:
        registry: one registry, or every registry with a url (and proxy with cache storage) when empty.
        logical_usage: scan the inventory for per-repository unique/shared bytes and image counts.
        dry_run: measure and report only (no alerts, no history row, no state change).
        config_path: the config file.
    """
    ctx = RunContext.load(config_path)
    if ctx.config.capacity is None:
        ctx.config.capacity = CapacityConfig()
    names = [ctx.registry_name(registry)] if registry else _measurable(ctx)
    results, failures, reports = {}, [], []
    try:
        notes = begin_run(ctx, "capacity")
        for name in names:
            try:
                results[name] = _one(ctx, name, logical_usage, dry_run, notes)
                reports.append(results[name])
            except RegkeeperError as e:
                failures.append(f"{name}: {e}")
                reports += reports_of(e)
                logger().error("capacity %s failed: %s", name, e)
    finally:
        ctx.close()
    if failures:
        raise with_reports(RegkeeperError("capacity failed for " + "; ".join(failures)), reports)
    if len(names) == 1:
        return results[names[0]]
    return {"flow": "capacity", "registries": results, "reports": reports}


def _one(ctx: RunContext, name: str, logical: bool, dry_run: bool, notes: list[str]) -> dict:
    """Measure one registry, alert, and publish its report (also when the run fails)."""
    cc = ctx.config.capacity or CapacityConfig()  # filled in by capacity() already
    rep = Report(flow="capacity", registry=name, title="regkeeper capacity")
    add_notes(rep, notes)
    metrics = RunMetrics("capacity", name)
    ok = False
    try:
        usage = measure_storage(ctx, name)
        inv = scan_registry(ctx, name) if logical and not _proxy(ctx, name, rep) else None
        check, deliveries = evaluate_and_alert(ctx, name, usage, dry_run)
        ro, ro_deliveries = check_read_only(ctx, name, dry_run)
        samples = cap.pick_pull_samples(inv, 3) if inv is not None else []
        latencies = pull_latency(ctx, name, samples) if samples else []
        usage_report(rep, usage, check, deliveries, dry_run)
        _usage_metrics(metrics, usage, check)
        _read_only_figures(rep, metrics, ro, ro_deliveries, dry_run)
        hist = cap.UsageHistory(cc.history_file(ctx.reports_dir())).load(name)
        rep.add_table(HISTORY_TABLE, history_rows(hist), HISTORY_COLUMNS)  # the table artifact
        _inventory_figures(ctx, name, rep, metrics, inv, latencies)
        rep.extra_html = usage_chart_html(hist, check, cc.warn, cc.critical, name)
        alerting = (
            not dry_run
            and not all(d.ok for d in deliveries + ro_deliveries)
            and (check.alert is not None or (ro is not None and ro.alert is not None))
        )
        if alerting:
            rep.note("an alert could not be delivered: it will be sent again on the next run")
        ok = not alerting
        rep.finish("dry-run" if dry_run else ("ok" if ok else "failed"))
        logger().info(
            "%s: %s used of %s (%s, %s)",
            name,
            human_bytes(check.used_bytes),
            human_bytes(check.capacity_bytes),
            check.basis,
            check.level,
        )
    except RegkeeperError as e:
        rep.lead(f"Failed: {e}")
        rep.note(str(e))
        rep.finish("failed")
        with_reports(e, [rep])  # the same exception, carrying the report
        raise
    finally:
        metrics.finish(ok)
        if rep.finished is None:
            rep.finish("failed")
        publish_report(rep, str(ctx.reports_dir()))
        if cc.pushgateway and not dry_run:
            try:
                metrics.push(cc.pushgateway)
            except Exception as e:  # noqa: BLE001 - metrics never fail a run
                logger().warning("metrics not pushed: %s", e)
    if rep.status == "failed":
        raise with_reports(RegkeeperError(f"capacity {name}: " + "; ".join(rep.notes[-2:])), [rep])
    return rep.to_dict()


def _measurable(ctx: RunContext) -> list[str]:
    """Every registry with a url, and a proxy known only by its upstream whose cache storage
    is configured (measured there)."""
    return [
        r.name
        for r in ctx.config.mirror_repositories
        if r.url or (r.type == "proxy" and (r.storage or (r.proxy_cache and r.proxy_cache.storage)))
    ]


def _proxy(ctx: RunContext, name: str, rep: Report) -> bool:
    """A proxy (pull-through cache) is measured on its storage but never scanned through its
    API: its tag lists are the upstream's, and reading each manifest would fill the cache."""
    if ctx.config.registry(name).type != "proxy":
        return False
    rep.note(
        f"{name}: it is type proxy: its images and per-repository usage are read from its storage, "
        "never through its API (a scan there would fill the cache from its upstream); no pull samples"
    )
    return True


def _usage_metrics(metrics: RunMetrics, usage, check) -> None:
    """Storage use on the ratio's basis (so bytes / capacity = ratio), days to full."""
    if check.forecast is not None:
        metrics.set_days_to_full(check.forecast.days_to_full)
    if usage is not None:
        metrics.set_storage(check.used_bytes, check.capacity_bytes, check.ratio, usage.files)


def _read_only_figures(rep: Report, metrics: RunMetrics, ro, deliveries, dry_run: bool) -> None:
    """Whether the registry takes writes, who keeps it read-only, the read-only alert."""
    if ro is None:
        return
    c = ro.check
    rep.summary["takes writes"] = {True: "no (read-only)", False: "yes", None: "unknown"}[c.refuses_writes]
    if c.refuses_writes is None:
        rep.note(c.detail)
        return
    metrics.set_read_only(bool(c.refuses_writes), ro.unexpected)
    if ro.owned_by:
        rep.note(ro.owned_by)
    elif c.refuses_writes:
        rep.lead("READ-ONLY: the registry refuses writes and no running regkeeper job explains it.")
        rep.note(
            f"READ-ONLY: the registry refuses writes ({c.detail}) and no live regkeeper run "
            f"holds a read-only window on it" + (f"; {ro.stale}" if ro.stale else "")
        )
    if ro.alert is not None:
        rep.lead(f"Read-only alert ({ro.alert.kind})" + (": not sent (dry run)." if dry_run else " sent."))
        rep.note(
            f"read-only alert ({ro.alert.kind}): {ro.alert.message}"
            + (" (dry run: not sent)" if dry_run else "")
        )
        for d in deliveries:
            rep.note(f"delivered to {d.target} ({d.fmt}): {'ok' if d.ok else 'FAILED ' + (d.error or '')}")


def _inventory_figures(
    ctx: RunContext, name: str, rep: Report, metrics: RunMetrics, inv, latencies: list[float]
) -> None:
    """Image counts (from the inventory, or a cheap tag count), logical usage, pull latency."""
    if inv is not None:
        images, manifests = cap.image_counts(inv)
        metrics.set_image_count(images, manifests, len(inv.repositories))
        rep.summary["images (tags)"] = images
        rep.summary["manifests"] = manifests
        rep.summary["repositories"] = len(inv.repositories)
        rep.summary["logical bytes (deduplicated)"] = cap.deduplicated_bytes(inv)
        df = cap.logical_usage(inv)
        rep.add_table("repositories", df.sort_values("total_bytes", ascending=False).to_dict("records"))
    elif ctx.config.registry(name).type == "proxy":  # what the cache holds, from its storage
        cached = read_cache(ctx.storage(name))
        tags = sum(len(i.tags) for i in cached.images)
        metrics.set_image_count(tags, len(cached.images), len(cached.repositories))
        rep.summary["images (tags)"] = tags
        rep.summary["images cached"] = len(cached.images)
        rep.summary["repositories"] = len(cached.repositories)
        rep.add_table("repositories", cached.per_repository())
    else:
        repos, tags = count_tags(ctx, name)
        metrics.set_image_count(tags, None, repos)
        rep.summary["images (tags)"] = tags
        rep.summary["repositories"] = repos
    proxy = ctx.config.registry(name).type == "proxy"  # deletes nothing: holds no quarantine
    if ctx.config.quarantine is not None and not proxy:  # deleted, undoable: counted apart
        records, held = quarantine_bytes(ctx, name)
        metrics.set_quarantine_bytes(held)
        rep.summary["bytes held in quarantine"] = held
        rep.summary["quarantine records"] = records
    for s in latencies:
        metrics.observe_pull(s)
    if latencies:
        rep.summary["pull latency p50 s"] = round(sorted(latencies)[len(latencies) // 2], 4)
