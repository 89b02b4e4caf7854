"""distribution's notification envelopes -> the pulls worth recording.

distribution (``notifications.endpoints`` in the registry's config) POSTs
``application/vnd.docker.distribution.events.v1+json``: ``{"events": [Event, ...]}``, each
``{id, timestamp, action, target: {mediaType, digest, repository, tag?, url, ...},
request: {addr, host, method, useragent}, source: {addr, instanceID}}`` (distribution
``notifications/event.go``). A pull is ``action: pull``; it is sent for blob GETs too
(``target.mediaType`` a layer type), so only manifest media types count. distribution 2.8 sends
a pull for a manifest HEAD as well as a GET (with the client's user agent), so a
``docker pull`` of an up-to-date image still counts. ``target.tag`` is absent for a pull by
digest.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from ..globs import match_any_tag

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)
ENVELOPE_TYPE = "application/vnd.docker.distribution.events.v1+json"


class EnvelopeError(ValueError):
    """The body is not an event envelope (answered 400: distribution logs it, retries)."""


@dataclass(frozen=True, slots=True)
class PullEvent:
    repository: str
    digest: str
    at: datetime  # the registry's timestamp (UTC)
    tag: str | None
    user_agent: str
    addr: str
    event_id: str = ""  # the event's ``id``: a resent envelope is not counted twice


@dataclass(slots=True)
class Parsed:
    pulls: list[PullEvent]
    events: int  # events in the envelope
    excluded: int  # manifest pulls dropped by the user-agent exclusion


def parse_time(s: str) -> datetime:
    """RFC 3339 with up to 9 fractional digits (Go's time.Time JSON) -> aware UTC datetime."""
    s = s.strip().replace("Z", "+00:00")
    if "." in s:
        head, frac = s.split(".", 1)
        i = 0
        while i < len(frac) and frac[i].isdigit():
            i += 1
        s = f"{head}.{frac[:i][:6].ljust(6, '0')}{frac[i:]}"
    t = datetime.fromisoformat(s)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def excluded(user_agent: str, globs: list[str]) -> bool:
    """A user agent matched by one of ``globs`` (case-insensitive; ``*`` spans ``/``: the one
    fnmatch-style matcher of globs.py)."""
    return match_any_tag([g.lower() for g in globs], (user_agent or "").lower()) is not None


def parse_envelope(body: bytes, exclude_agents: list[str]) -> Parsed:
    """The manifest pulls of one envelope, minus the excluded user agents. Other events (pushes,
    deletes, blob pulls, mounts) are counted and ignored."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise EnvelopeError(f"not JSON: {e}") from None
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise EnvelopeError('expected {"events": [...]}')
    out = Parsed([], len(events), 0)
    for ev in events:
        p = _pull(ev)
        if p is None:
            continue
        if excluded(p.user_agent, exclude_agents):
            out.excluded += 1
        else:
            out.pulls.append(p)
    return out


def _pull(ev) -> PullEvent | None:
    if not isinstance(ev, dict) or ev.get("action") != "pull":
        return None
    target = ev.get("target") or {}
    if target.get("mediaType") not in MANIFEST_TYPES:
        return None
    repo, digest = target.get("repository"), target.get("digest")
    if not repo or not isinstance(digest, str) or ":" not in digest:
        return None
    req = ev.get("request") or {}
    try:
        at = parse_time(ev["timestamp"])
    except (KeyError, TypeError, ValueError):
        at = datetime.now(UTC)
    return PullEvent(
        str(repo),
        digest,
        at,
        target.get("tag") or None,
        str(req.get("useragent") or ""),
        str(req.get("addr") or ""),
        str(ev.get("id") or ""),
    )
