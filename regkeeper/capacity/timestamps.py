"""ISO-8601 UTC timestamps (``...Z``) as written in state files, the history CSV and alert payloads,
and the Prefect event resource of a registry that alert events carry."""

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


def registry_resource(registry: str) -> dict:
    """The Prefect event resource of a registry (capacity and read-only events alike)."""
    return {
        "prefect.resource.id": f"regkeeper.registry.{registry}",
        "prefect.resource.name": registry,
        "regkeeper.registry": registry,
    }
