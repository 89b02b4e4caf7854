"""ISO-8601 UTC timestamps (``...Z``) as written in state files, the history CSV and alert payloads."""

from datetime import UTC, datetime


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
