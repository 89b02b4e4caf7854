"""What the planner reads from the pull store for one registry: the last pull per
(repository, digest) and whether collection covers a window.

Coverage (the fail-safe of ``pulledWithin``): the window ``[now - window, now]`` is covered when
collection for the registry started before ``now - window`` (its first event), no recorded gap
overlaps the window, and the receiver was alive recently (its heartbeat is at most the gap
tolerance old: a receiver that is down now is an open gap).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..config.units import format_duration


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Gap:
    start: datetime
    end: datetime
    reason: str


@dataclass
class PullHistory:
    registry: str
    last: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (repo, digest) -> last pull
    since: datetime | None = None  # collection started (first event stored for the registry)
    gaps: list[Gap] = field(default_factory=list)
    alive: datetime | None = None  # the receiver's last heartbeat
    tolerance: timedelta = timedelta(minutes=10)
    last_event: datetime | None = None  # the last envelope stored for the registry

    def last_pull(self, repository: str, digest: str) -> datetime | None:
        return self.last.get((repository, digest))

    def shortfall(self, window: timedelta, now: datetime) -> str | None:
        """None when collection covers ``[now - window, now]``, else why not (report wording)."""
        start = now - window
        if self.since is None:
            return f"pull history shorter than the window (no pull events recorded for {self.registry} yet)"
        if self.since > start:
            return f"pull history shorter than the window (collecting since {iso(self.since)})"
        for g in self.gaps:
            if g.end > start and g.start < now:
                return f"pull history has a gap in the window ({g.reason} {iso(g.start)} to {iso(g.end)})"
        if self.alive is None or now - self.alive > self.tolerance:
            seen = iso(self.alive) if self.alive else "never"
            return f"pull history has a gap in the window (receiver not heard from since {seen})"
        return None

    def status(self) -> str:
        last = iso(self.last_event) if self.last_event else "none"
        return f"last event {last}, {len(self.last)} images pulled, {len(self.gaps)} gaps recorded"

    def describe(self, window: timedelta, now: datetime) -> str:
        why = self.shortfall(window, now)
        head = f"pulledWithin {format_duration(window)} on {self.registry}: "
        if why is None and self.since is not None:
            since = iso(self.since)
            return (
                head
                + f"pull history covers the window (collecting since {since}, {len(self.last)} images pulled)"
            )
        return head + str(why) + ": every image the rule would delete is kept"
