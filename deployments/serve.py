"""Serve every regkeeper deployment from one process: ``regkeeper serve`` (or
``python -m deployments.serve``).

Schedules are cron expressions in ``$REGKEEPER_TIMEZONE`` (default UTC). The same deployments,
with the same names, schedules and concurrency limits, are declared in ``deployments/prefect.yaml``
for a Kubernetes work pool; ``tests/flows/test_deployments.py`` keeps the two in step.

| deployment          | schedule                        | concurrency |
| ------------------- | ------------------------------- | ----------- |
| backup/regkeeper    | 02:00 daily                     | 1           |
| gc/regkeeper        | 03:00 daily                     | 1           |
| expire/regkeeper    | hourly at :30 (clear of gc's 03:00 start) | 1 |
| replicate/regkeeper | every 15 minutes                | 1           |
| capacity/regkeeper  | every 5 minutes                 | -           |
| restore/regkeeper   | none: run by hand (dry run by default) | 1    |
| nightly/regkeeper   | 02:00 daily, INACTIVE: turn it on instead of the five schedules above | 1 |

The config file comes from ``$REGKEEPER_CONFIG`` in the serving process (every flow's
``config_path`` parameter defaults to it).
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from flows.jobs import JOBS, flow_of

DEPLOYMENT_NAME = "regkeeper"
TAGS = ("regkeeper",)
DEFAULT_TIMEZONE = "UTC"
TIMEZONE_ENV = "REGKEEPER_TIMEZONE"


@dataclass(frozen=True)
class Spec:
    flow: str  # the job's name in flows.jobs.JOBS (the flow's name)
    cron: Optional[str]  # None: no schedule (run by hand)
    concurrency_limit: Optional[int]
    active: bool = True  # an inactive schedule is registered but creates no runs
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        """Where the flow function lives (from the jobs map)."""
        return JOBS[self.flow].module

    @property
    def entrypoint(self) -> str:
        """The file-path entrypoint prefect.yaml uses (``flows/gc.py:gc``)."""
        return JOBS[self.flow].entrypoint


# Destructive jobs (they delete tags, overwrite tags or prune snapshots) run one at a time.
SPECS: tuple[Spec, ...] = (
    Spec("backup", "0 2 * * *", 1),
    Spec("gc", "0 3 * * *", 1),
    Spec("expire", "30 * * * *", 1),
    Spec("replicate", "*/15 * * * *", 1),
    # every 5 minutes: storage + thresholds + tag counts only; the nightly run adds the inventory
    Spec("capacity", "*/5 * * * *", None, parameters={"logical_usage": False}),
    Spec("restore", None, 1),
    Spec("nightly", "0 2 * * *", 1, active=False),
)


def timezone_from_env() -> str:
    return os.environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE


def load_flow(spec: Spec):
    return flow_of(spec.flow)


def build_deployments(timezone: Optional[str] = None, *, skip_missing: bool = False) -> list:
    """One ``RunnerDeployment`` per entry of :data:`SPECS`.

    ``timezone``: an IANA name for every cron schedule (default ``$REGKEEPER_TIMEZONE``, else
    UTC). ``skip_missing``: leave out flows whose module cannot be imported instead of raising.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    tz = timezone or timezone_from_env()
    out = []
    for spec in SPECS:
        try:
            fn = load_flow(spec)
        except ImportError:
            if skip_missing:
                continue
            raise
        schedules = [Cron(spec.cron, timezone=tz, active=spec.active)] if spec.cron else []
        out.append(
            fn.to_deployment(
                name=DEPLOYMENT_NAME,
                schedules=schedules,
                concurrency_limit=spec.concurrency_limit,
                parameters=dict(spec.parameters),
                tags=list(TAGS),
                enforce_parameter_schema=True,
                # module path: the served runs import the installed package from any directory
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """Serve every deployment until interrupted (Ctrl-C pauses their schedules)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect import serve

    tz = timezone_from_env()
    deployments = build_deployments(tz)
    for d in deployments:
        sched = (
            ", ".join(f"{s.schedule.cron} {tz}" + ("" if s.active else " (inactive)") for s in d.schedules)
            or "no schedule"
        )
        print(
            f"serving {d.flow_name}/{d.name}: {sched}"
            + (f", concurrency {d.concurrency_limit}" if d.concurrency_limit else ""),
            file=sys.stderr,
        )
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print(
            "note: no PREFECT_API_URL: serving against a temporary Prefect server that lives as "
            "long as this process. For a lasting setup run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api",
            file=sys.stderr,
        )
    if not os.environ.get("REGKEEPER_CONFIG"):
        print(
            "note: REGKEEPER_CONFIG is not set; runs read ./regkeeper.yaml unless their "
            "config_path parameter says otherwise",
            file=sys.stderr,
        )
    serve(*deployments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
