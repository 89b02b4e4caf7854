"""Usage history (an append-only CSV, pruned after ``capacity.historyRetention``, 90 days by
default) and the days-to-full forecast (a least-squares line through the last ``window`` of it).

Each row holds the usage compared with the capacity, its basis (allocated / file / object bytes,
see ``measure.used_on_basis``) and the days to full forecast at that time; the forecast uses only
rows of the current basis (rows written before the basis column count as file bytes)."""

import csv
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .state import _atomic_write
from .thresholds import Thresholds
from .timestamps import _iso

HISTORY_COLUMNS = ["timestamp", "registry", "bytes_used", "capacity_bytes", "basis", "days_to_full"]
LEGACY_BASIS = "file bytes"  # rows written before the basis column


class UsageHistory:
    """Append-only CSV of measurements (``capacity.history``, default
    reports/capacity/history.csv)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(
        self,
        registry: str,
        bytes_used: int,
        capacity_bytes: int | None,
        timestamp: datetime | None = None,
        *,
        basis: str = "",
        days_to_full: float | None = None,
    ) -> None:
        ts = timestamp or datetime.now(UTC)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            self._upgrade()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(HISTORY_COLUMNS)
            cap = "" if capacity_bytes is None else int(capacity_bytes)
            days = "" if days_to_full is None else round(float(days_to_full), 3)
            w.writerow([_iso(ts), registry, int(bytes_used), cap, basis, days])

    def _upgrade(self) -> None:
        """A file written with fewer columns (before ``basis``) is rewritten with every column
        (atomically), so appended rows line up with the header."""
        with open(self.path, newline="") as f:
            header = next(csv.reader(f), [])
        if header == HISTORY_COLUMNS:
            return
        _atomic_write(self.path, self._to_csv(self.load()))

    @staticmethod
    def _to_csv(df) -> str:
        out = df.copy()
        out["timestamp"] = out["timestamp"].map(_iso)
        out["capacity_bytes"] = [("" if v != v else int(v)) for v in out["capacity_bytes"]]  # NaN -> empty
        return out[HISTORY_COLUMNS].to_csv(index=False)

    def record(
        self,
        registry: str,
        used: int,
        capacity_bytes: int | None,
        now: datetime,
        *,
        basis: str,
        thresholds: Thresholds = Thresholds(),
        window: timedelta = timedelta(days=14),
    ) -> "Forecast":
        """Forecast from the history plus this measurement, then append the measurement with
        the days to full forecast at this time."""
        import pandas as pd

        past = self.load(registry)
        row = {"timestamp": pd.Timestamp(now), "registry": registry, "bytes_used": used}
        row |= {"capacity_bytes": capacity_bytes, "basis": basis}
        df = pd.concat([past, pd.DataFrame([row])], ignore_index=True) if len(past) else pd.DataFrame([row])
        fc = forecast(df, capacity_bytes, thresholds.warn, thresholds.critical, window, basis=basis)
        self.append(registry, used, capacity_bytes, now, basis=basis, days_to_full=fc.days_to_full)
        return fc

    def load(self, registry: str | None = None):
        """DataFrame with tz-aware UTC ``timestamp``, sorted by time; one registry if given."""
        import pandas as pd

        if not self.path.exists():
            return pd.DataFrame(
                {
                    "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                    "registry": pd.Series(dtype=str),
                    "bytes_used": pd.Series(dtype="int64"),
                    "capacity_bytes": pd.Series(dtype="float64"),
                    "basis": pd.Series(dtype=str),
                    "days_to_full": pd.Series(dtype="float64"),
                }
            )
        df = pd.read_csv(self.path, dtype={"registry": str, "basis": str})
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
        if "basis" not in df.columns:
            df["basis"] = LEGACY_BASIS
        df["basis"] = df["basis"].fillna(LEGACY_BASIS)
        if "days_to_full" not in df.columns:
            df["days_to_full"] = float("nan")
        if registry is not None:
            df = df[df["registry"] == registry]
        return df.sort_values("timestamp", ignore_index=True)

    def prune(
        self,
        keep: timedelta = timedelta(days=90),
        now: datetime | None = None,
        slack: timedelta = timedelta(0),
    ) -> int:
        """Drop rows older than ``keep`` (atomic rewrite). Returns rows dropped. With ``slack``,
        nothing is rewritten until the oldest row is that much past ``keep`` (a run every 5
        minutes rewrites the file once a day, not every run)."""
        if not self.path.exists():
            return 0
        df = self.load()
        cutoff = (now or datetime.now(UTC)) - keep
        if df.empty or df["timestamp"].min() >= cutoff - slack:
            return 0
        kept = df[df["timestamp"] >= cutoff]
        dropped = len(df) - len(kept)
        if dropped:
            _atomic_write(self.path, self._to_csv(kept))
        return dropped


@dataclass(frozen=True, slots=True)
class Forecast:
    slope_bytes_per_day: float | None
    days_to_warn: float | None
    days_to_critical: float | None
    days_to_full: float | None
    points_used: int
    method: str  # "linear-least-squares" | "insufficient-data"
    reason: str | None = None  # why days are None
    current_bytes: int | None = None
    capacity_bytes: int | None = None
    as_of: datetime | None = None  # time of the latest point the days count from


MAX_FORECAST_DAYS = 3650.0


def _recent(df, registry: str | None, window: timedelta, capacity_bytes: int | None, basis: str | None):
    """``(points, capacity)``: the registry's usage points of the last ``window`` before its latest
    one (UTC timestamps, oldest first) and the capacity (the one given, else the latest recorded);
    None when there is no history."""
    import pandas as pd

    d = df
    if registry is not None and "registry" in d.columns:
        d = d[d["registry"] == registry]
    if basis is not None and "basis" in d.columns:
        d = d[d["basis"].fillna(LEGACY_BASIS).replace("", LEGACY_BASIS) == basis]
    d = d.dropna(subset=["timestamp", "bytes_used"])
    if d.empty:
        return None
    ts = pd.to_datetime(d["timestamp"], utc=True)
    d = d.assign(timestamp=ts).sort_values("timestamp")
    if capacity_bytes is None and "capacity_bytes" in d.columns:
        caps = d["capacity_bytes"].dropna()
        capacity_bytes = int(caps.iloc[-1]) if len(caps) else None
    last_ts = d["timestamp"].iloc[-1]
    return d[d["timestamp"] >= last_ts - pd.Timedelta(window)], capacity_bytes


def forecast(
    df,
    capacity_bytes: int | None = None,
    warn: float = 0.8,
    critical: float = 0.9,
    window: timedelta = timedelta(days=14),
    *,
    registry: str | None = None,
    min_points: int = 3,
    min_span: timedelta = timedelta(hours=1),
    basis: str | None = None,
) -> Forecast:
    """Least-squares line (numpy.polyfit) through the usage of the last ``window`` of history.

    Days count from the latest point: ``(threshold - latest bytes) / slope``; 0 when already at
    or past the threshold; None when the trend is flat or shrinking (< 1 byte/day), further than
    10 years, or there is too little data (fewer than ``min_points`` points or a span below
    ``min_span``: ``method`` is then "insufficient-data"). ``capacity_bytes`` defaults to the
    latest capacity recorded in the history. ``basis``: use only rows measured on it."""
    import numpy as np
    import pandas as pd

    recent = _recent(df, registry, window, capacity_bytes, basis)
    if recent is None:
        return Forecast(
            None, None, None, None, 0, "insufficient-data", "no history", capacity_bytes=capacity_bytes
        )
    d, capacity_bytes = recent
    last_ts = d["timestamp"].iloc[-1]
    n = len(d)
    current = int(d["bytes_used"].iloc[-1])
    as_of = last_ts.to_pydatetime()
    span = d["timestamp"].iloc[-1] - d["timestamp"].iloc[0]
    if n < min_points or span < pd.Timedelta(min_span):
        return Forecast(
            None,
            None,
            None,
            None,
            n,
            "insufficient-data",
            f"{n} point(s) over {span} (need {min_points} over {min_span})",
            current,
            capacity_bytes,
            as_of,
        )
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
    return Forecast(
        slope,
        days(warn),
        days(critical),
        days(1.0),
        n,
        "linear-least-squares",
        reason,
        current,
        capacity_bytes,
        as_of,
    )
