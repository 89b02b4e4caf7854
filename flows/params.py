"""The flow parameters several flows (and the preview deployments) share, declared once: the
Prefect UI's run form shows their descriptions and bounds. (No postponed annotations here: Prefect
builds the parameter schemas from these.)"""

from typing import Annotated, Optional

from pydantic import Field

ConfigPath = Annotated[
    Optional[str], Field(description="Config file (default: $REGKEEPER_CONFIG or ./regkeeper.yaml)")
]
DeleteDryRun = Annotated[bool, Field(description="Plan and report only; delete nothing")]
CapForce = Annotated[bool, Field(description="Override the blast-radius cap (maxDeleteFraction)")]

GcRegistry = Annotated[
    Optional[str], Field(description="Registry name from mirrorRepositories (default: gc.registry)")
]
GcDays = Annotated[
    Optional[int],
    Field(ge=0, le=3650, description="Delete versions older than this many days (default: gc.days)"),
]
GcKeepLast = Annotated[
    Optional[int],
    Field(ge=0, le=10000, description="Always keep the newest N per repository (default: gc.keepLast)"),
]
ExpireRegistry = Annotated[
    Optional[str],
    Field(description="Registry name from mirrorRepositories (default: expire.registry, else gc.registry)"),
]
ReplicationRule = Annotated[
    Optional[str],
    Field(
        description="Replication rule name (its `name:` key, else `<from>-to-<to+to>`); default: every rule"
    ),
]
