"""One registry, one run: ratio, history row, forecast and state transition
(:func:`check_capacity`); sending and saving is :func:`.notify.notify_and_commit`'s job."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .alerts import Alert
from .history import Forecast, UsageHistory
from .measure import StorageUsage, resolve_capacity, used_on_basis
from .state import CapacityState, StateStore, evaluate
from .thresholds import Thresholds


@dataclass(slots=True)
class CapacityCheck:
    registry: str
    usage: StorageUsage | None
    capacity_bytes: int | None
    capacity_source: str  # capacityBytes | filesystem | none
    ratio: float | None
    note: str | None  # why there is no ratio
    state: CapacityState  # the new state (saved by notify_and_commit / store.save)
    previous_state: CapacityState
    alert: Alert | None
    forecast: Forecast | None
    used_bytes: int | None = None  # the usage compared with the capacity (on ``basis``)
    basis: str = "file bytes"  # allocated bytes | file bytes | object bytes (measure.used_on_basis)

    @property
    def level(self) -> str:
        return self.state.level


def check_capacity(
    registry: str,
    usage: StorageUsage | None,
    *,
    capacity_bytes: int | None = None,
    thresholds: Thresholds = Thresholds(),
    store: StateStore,
    history: UsageHistory | None = None,
    window: timedelta = timedelta(days=14),
    now: datetime | None = None,
    reassert_after: timedelta | None = None,
) -> CapacityCheck:
    """Ratio, history row, forecast and state transition for one registry. Does not send or
    save: call :func:`notify_and_commit` (or ``store.save(check.state)``) afterwards."""
    now = now or datetime.now(UTC)
    cap, src, note = resolve_capacity(usage, capacity_bytes)
    used, basis = used_on_basis(usage, src)
    ratio = used / cap if used is not None and cap else None
    fc = None
    if used is not None and history is not None:
        fc = history.record(registry, used, cap, now, basis=basis, thresholds=thresholds, window=window)
    previous = store.load(registry)
    state, alert = evaluate(
        ratio,
        thresholds,
        previous,
        used_bytes=used,
        capacity_bytes=cap,
        days_to_full=fc.days_to_full if fc else None,
        now=now,
        reassert_after=reassert_after,
    )
    return CapacityCheck(registry, usage, cap, src, ratio, note, state, previous, alert, fc, used, basis)
