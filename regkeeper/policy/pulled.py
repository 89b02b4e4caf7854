"""``pulledWithin``: keep an image (digest) pulled within the window, one more keep condition
after the rule's verdict (gc and keepLast/keepDays tiers).

Fail-safe (DESIGN: a rule that depends on pull history acts only where the recorded history
covers its whole window): when collection for the registry does not cover the window
(``PullHistory.shortfall``), every tag the rule would delete is kept with that reason, and so is
every untagged manifest. Pull records are read once per run (``regkeeper.pulls.lookup``) and
passed in like push times: no I/O here.
"""

from datetime import datetime, timedelta

from ..config import format_duration
from ..pulls.history import PullHistory, iso
from .decisions import DELETE, KEEP

Verdict = tuple[str, str]


class PullKeep:
    """The pull condition for one plan: ``pulls`` (None = no history at all) and ``now``."""

    def __init__(self, pulls: PullHistory | None, now: datetime):
        self.pulls = pulls
        self.now = now
        self._short: dict[timedelta, str | None] = {}

    def shortfall(self, window: timedelta) -> str | None:
        if window not in self._short:
            self._short[window] = (
                "pull history unavailable" if self.pulls is None else self.pulls.shortfall(window, self.now)
            )
        return self._short[window]

    def pulled(self, window: timedelta, repository: str, digest: str) -> str | None:
        """The keep reason when the digest was pulled within the window, else None."""
        last = self.pulls.last_pull(repository, digest) if self.pulls is not None else None
        if last is not None and self.now - last <= window:
            return f"pulled {iso(last)} (within {format_duration(window)})"
        return None

    def verdict(self, window: timedelta | None, repository: str, digest: str, v: Verdict) -> Verdict:
        """The rule's verdict, turned into a keep when the image was pulled within the window
        or the history cannot tell."""
        if window is None or v[0] != DELETE:
            return v
        why = self.pulled(window, repository, digest) or self.shortfall(window)
        return (KEEP, why) if why else v

    def untagged(self, window: timedelta | None, repository: str, digest: str) -> str | None:
        """Why an untagged manifest is kept by the pull condition (pulled by digest within the
        window, or history short), else None."""
        if window is None:
            return None
        why = self.pulled(window, repository, digest) or self.shortfall(window)
        return f"untagged, {why}" if why else None
