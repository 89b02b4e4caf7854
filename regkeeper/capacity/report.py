"""What a capacity run reports: the headline (level, usage on its basis, the forecast, alerts),
the figures, the usage-history table (the run's ``<key>-table`` artifact) and the chart of the
HTML report (or, after a first run, why there is none yet)."""

from ..util import human_bytes
from .chart import render_usage_svg
from .check import CapacityCheck
from .measure import BASIS_ALLOCATED, StorageUsage

HISTORY_TABLE = "usage history"
HISTORY_COLUMNS = ["time (UTC)", "usage", "used bytes", "capacity bytes", "basis", "days to full"]
HISTORY_ROWS = 50
FIRST_RUN = "history starts now; the chart appears after the second run"

_SOURCE = {"filesystem": "the filesystem's size", "capacityBytes": "capacityBytes"}


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{r * 100:.1f}%"


def _days(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def usage_report(rep, usage: StorageUsage | None, check: CapacityCheck, deliveries, dry_run: bool) -> None:
    """Headline, figures and notes of the usage part (storage, thresholds, forecast, alert)."""
    if usage is None:
        rep.lead(
            "No storage access (no storage section for this registry): physical usage unknown, "
            "no threshold alerts; only image counts are reported."
        )
        rep.note(
            "no storage access configured for this registry (storage section): physical usage "
            "unknown; only logical usage is reported"
        )
    elif check.ratio is not None:
        rep.lead(
            f"Level {check.level.upper()}: {_pct(check.ratio)} used — {human_bytes(check.used_bytes)} "
            f"({check.basis}) of {human_bytes(check.capacity_bytes)} "
            f"({_SOURCE.get(check.capacity_source, check.capacity_source)})."
        )
    else:
        rep.lead(f"Usage {human_bytes(check.used_bytes)} ({check.basis}); no usage ratio: {check.note}")
    _forecast_lead(rep, check)
    if check.alert is not None:
        sent = " Not sent (dry run)." if dry_run else _delivered(deliveries)
        rep.lead(f"Alert {check.alert.level.upper()} ({check.alert.kind}): {check.alert.message}.{sent}")
    _figures(rep, usage, check)
    if check.note:
        rep.note(check.note)
    if check.alert is not None:
        rep.note(
            f"alert {check.alert.level}: {check.alert.message}" + (" (dry run: not sent)" if dry_run else "")
        )
        for d in deliveries:
            rep.note(f"delivered to {d.target} ({d.fmt}): {'ok' if d.ok else 'FAILED ' + (d.error or '')}")


def _delivered(deliveries) -> str:
    if not deliveries:
        return ""
    bad = [d for d in deliveries if not d.ok]
    if bad:
        return f" Delivery FAILED to {', '.join(d.target for d in bad)}: it is sent again next run."
    return f" Sent to {len(deliveries)} webhook(s)."


def _forecast_lead(rep, check: CapacityCheck) -> None:
    fc = check.forecast
    if fc is None or check.used_bytes is None:
        return
    if fc.method == "insufficient-data":
        if fc.points_used <= 1:
            rep.lead("Forecast: history starts now; it needs 3 measurements over at least an hour.")
        else:
            rep.lead(f"Forecast: not yet ({fc.points_used} measurements; it needs 3 over at least an hour).")
    elif fc.days_to_full is not None:
        parts = [f"warn in {fc.days_to_warn:.1f}" if fc.days_to_warn is not None else None]
        parts.append(f"critical in {fc.days_to_critical:.1f}" if fc.days_to_critical is not None else None)
        when = ", ".join(p for p in parts if p)
        growth = human_bytes(fc.slope_bytes_per_day)
        rep.lead(
            f"Forecast: full in about {fc.days_to_full:.1f} days"
            + (f" ({when})" if when else "")
            + f", growing {growth}/day."
        )
    else:
        rep.lead(f"Forecast: no date to full ({fc.reason or 'not growing'}).")


def _figures(rep, usage: StorageUsage | None, check: CapacityCheck) -> None:
    s = rep.summary
    s["level"] = check.level
    s["usage ratio"] = round(check.ratio, 4) if check.ratio is not None else None
    s["storage bytes"] = check.used_bytes
    s["basis"] = check.basis
    s["capacity bytes"] = check.capacity_bytes
    s["capacity source"] = check.capacity_source
    fc = check.forecast
    if fc is not None:
        s["days to full"] = _days(fc.days_to_full)
        s["days to warn"] = _days(fc.days_to_warn)
        s["days to critical"] = _days(fc.days_to_critical)
        slope = fc.slope_bytes_per_day
        s["growth bytes/day"] = round(slope) if slope is not None else None
    if usage is not None:
        s["file bytes"] = usage.bytes_used
        if usage.allocated_bytes is not None:
            s["allocated bytes"] = usage.allocated_bytes
        s["files"] = usage.files
        if usage.fs_used_bytes is not None and check.capacity_source == "filesystem":
            s["filesystem used bytes (df)"] = usage.fs_used_bytes  # the registry may share it


def history_rows(df, limit: int = HISTORY_ROWS) -> list[dict]:
    """The newest ``limit`` measurements of one registry, newest first (the table artifact)."""
    out = []
    for r in df.sort_values("timestamp", ascending=False).head(limit).itertuples(index=False):
        cap = None if r.capacity_bytes != r.capacity_bytes else int(r.capacity_bytes)  # NaN
        days = getattr(r, "days_to_full", None)
        out.append(
            {
                "time (UTC)": r.timestamp.to_pydatetime(),
                "usage": _pct(r.bytes_used / cap) if cap else "-",
                "used bytes": int(r.bytes_used),
                "capacity bytes": cap,
                "basis": getattr(r, "basis", "") or "",
                "days to full": None if days is None or days != days else round(float(days), 1),
            }
        )
    return out


def usage_chart_html(df, check: CapacityCheck, warn: float, critical: float, registry: str) -> str:
    """The HTML report's chart of the measurements on the current basis; after a first run
    (one measurement) a sentence saying when the chart appears, not an empty chart."""
    if "basis" in df.columns:
        df = df[df["basis"] == check.basis]
    if len(df) < 2:
        return f"<h2>Usage over time</h2><p class='when'>{FIRST_RUN}.</p>"
    svg = render_usage_svg(df, check.capacity_bytes, warn, critical, registry=registry)
    label = " (allocated bytes, as df counts)" if check.basis == BASIS_ALLOCATED else f" ({check.basis})"
    return f"<h2>Usage over time{label}</h2>" + svg
