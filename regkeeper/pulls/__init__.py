"""Pull events: distribution's notifications -> last pull per image, for ``pulledWithin``.

- ``events``: parse an envelope, keep manifest pulls, drop excluded user agents.
- ``store``: SQLite (default) or PostgreSQL; last pull + count per (registry, repository,
  digest), collection start, gaps, the receiver's heartbeat.
- ``history``: what the planner reads (``PullHistory``: last pulls, coverage of a window).
- ``receiver``: the HTTP endpoint (``regkeeper events serve``) and its metrics.
- ``lookup``: the pull history a gc / expire run reads, once per registry.
"""

from .events import MANIFEST_TYPES, EnvelopeError, PullEvent, parse_envelope
from .history import Gap, PullHistory
from .store import PullStore

__all__ = [
    "MANIFEST_TYPES",
    "EnvelopeError",
    "Gap",
    "PullEvent",
    "PullHistory",
    "PullStore",
    "parse_envelope",
]
