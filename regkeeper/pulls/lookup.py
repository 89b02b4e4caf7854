"""The pull history a gc / expire run reads: once per registry, only when a rule uses
``pulledWithin``; plus the report note that says whether it covers each window."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from ..config import Config
from ..config.rulesets import pull_windows
from ..errors import RegkeeperError
from .history import PullHistory
from .store import PullStore


def windows_in_use(config: Config, job: str) -> list[timedelta]:
    """The distinct ``pulledWithin`` windows a job's rules use (gc: ``gc``; expire: the tiers)."""
    if job == "gc":
        ws = [config.gc.pulled_within] if config.gc and config.gc.pulled_within else []
        ws += pull_windows(config.gc.rules or []) if config.gc else []
    else:
        ws = [t.pulled_within for t in config.tiers if t.pulled_within]
        ws += [w for t in config.tiers for w in pull_windows(t.rules or [])]
    return sorted(set(ws))


def read_history(config: Config, registry: str) -> PullHistory:
    tolerance = config.pulls.gap_tolerance if config.pulls else timedelta(minutes=10)
    store = PullStore(config.pulls_store_url())
    try:
        return store.history(registry, tolerance.total_seconds())
    finally:
        store.close()


def history_for(
    config: Config, job: str, registry: str, now: datetime
) -> tuple[PullHistory | None, list[str]]:
    """(history, report notes); (None, []) when no rule of the job uses pulledWithin."""
    windows = windows_in_use(config, job)
    if not windows:
        return None, []
    try:
        hist = read_history(config, registry)
    except (RegkeeperError, OSError) as e:
        why = f"pull history unavailable ({e})"
        return None, [f"pulledWithin on {registry}: {why}: every image the rule would delete is kept"]
    return hist, notes(hist, windows, now)


def notes(hist: PullHistory, windows: Iterable[timedelta], now: datetime) -> list[str]:
    return [hist.describe(w, now) for w in windows]
