"""Levels and thresholds: ``ok < warn < critical`` at 80% / 90% of capacity (the seed's values),
with hysteresis on the way down (see :mod:`.state` for the alerting state machine)."""

from dataclasses import dataclass

LEVELS = ("ok", "warn", "critical")
_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}


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
    sticky = classify(round(ratio + t.hysteresis, 9), t)  # the level inside the hysteresis band
    return LEVELS[max(_RANK[up], min(_RANK[previous], _RANK[sticky]))]
