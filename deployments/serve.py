"""Serve every regkeeper deployment from one process: ``regkeeper serve`` (or
``python -m deployments.serve``).

Deployments are named by job and purpose, so the Prefect UI's deployments page tells them apart
by name: ``gc-nightly`` deletes on a schedule, ``gc-preview`` is the button that shows what gc
would delete. Schedules are cron expressions in ``$REGKEEPER_TIMEZONE`` (default UTC). The same
deployments, with the same names, schedules, parameters, tags and concurrency limits, are
declared in ``deployments/prefect.yaml`` for a Kubernetes work pool;
``tests/flows/test_deployments.py`` keeps the two in step.

| deployment                       | schedule                         | concurrency |
| -------------------------------- | -------------------------------- | ----------- |
| backup/backup-nightly            | 02:00 daily                      | 1           |
| gc/gc-nightly                    | 03:00 daily                      | 1           |
| gc/gc-preview                    | none: a dry run, by hand         | -           |
| expire/expire-hourly             | hourly at :30 (clear of gc's 03:00 start) | 1  |
| expire/expire-preview            | none: a dry run, by hand         | -           |
| replicate/replicate-every-15-min | every 15 minutes                 | 1           |
| replicate/replicate-preview      | none: a dry run, by hand         | -           |
| restore/restore-manual           | none: by hand (a dry run unless dry_run is false) | 1 |
| backtest/backtest-manual         | none: by hand (reads only: the rules' regret)      | - |
| undo/undo-manual                 | none: by hand (a dry run unless dry_run is false) | 1 |
| capacity/capacity-every-5-min    | every 5 minutes                  | -           |
| nightly/nightly-all-jobs         | 02:00 daily, INACTIVE: turn it on instead of the schedules above | 1 |

The preview deployments run ``deployments/preview.py``'s flows: ``dry_run`` is fixed to true
(the server refuses false) and there is no ``force``.

The config file comes from ``$REGKEEPER_CONFIG`` in the serving process (every flow's
``config_path`` parameter defaults to it).
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from flows.jobs import JOBS, flow_of

TAGS = ("regkeeper",)  # every deployment; plus "deletes", "writes" or "preview" by purpose
DEFAULT_TIMEZONE = "UTC"
TIMEZONE_ENV = "REGKEEPER_TIMEZONE"
PREVIEW_MODULE = "deployments.preview"


@dataclass(frozen=True)
class Spec:
    name: str  # the deployment's name: job and purpose (``gc-nightly``, ``gc-preview``)
    flow: str  # the job's name in flows.jobs.JOBS (the flow's name)
    cron: Optional[str]  # None: no schedule (run by hand)
    concurrency_limit: Optional[int]
    description: str
    active: bool = True  # an inactive schedule is registered but creates no runs
    parameters: dict[str, Any] = field(default_factory=dict)
    preview: bool = False  # the dry-run-only flow of deployments/preview.py
    purpose: Optional[str] = None  # a tag beside "regkeeper": deletes | writes | preview

    @property
    def module(self) -> str:
        """Where the flow function lives (from the jobs map, or deployments.preview)."""
        return PREVIEW_MODULE if self.preview else JOBS[self.flow].module

    @property
    def function(self) -> str:
        return f"{self.flow}_preview" if self.preview else self.flow

    @property
    def entrypoint(self) -> str:
        """The file-path entrypoint prefect.yaml uses (``flows/gc.py:gc``)."""
        return f"{self.module.replace('.', '/')}.py:{self.function}"

    @property
    def tags(self) -> list[str]:
        return [*TAGS, *([self.purpose] if self.purpose else [])]


# Destructive jobs (they delete tags, overwrite tags or prune snapshots) run one at a time.
SPECS: tuple[Spec, ...] = (
    Spec(
        "backup-nightly",
        "backup",
        "0 2 * * *",
        1,
        "Nightly 02:00: snapshot registry metadata (tags, manifests, configs, blob descriptors) to "
        "the backup target; prunes snapshots beyond backup.keep.",
    ),
    Spec(
        "gc-nightly",
        "gc",
        "0 3 * * *",
        1,
        "Nightly 03:00: DELETES image versions that no rule keeps and no Kubernetes workload uses, "
        "then reclaims blob storage. To see what it would delete, run gc-preview.",
        purpose="deletes",
    ),
    Spec(
        "gc-preview",
        "gc",
        None,
        None,
        "Dry run, deletes nothing: what gc would delete and the bytes it would free, in the run's "
        "report and artifacts. dry_run is fixed to true.",
        parameters={"dry_run": True},  # shown in every run's parameters; the only value allowed
        preview=True,
        purpose="preview",
    ),
    Spec(
        "expire-hourly",
        "expire",
        "30 * * * *",
        1,
        "Hourly at :30: DELETES what the tier policies expire (temp repositories 72h after push, "
        "removed whole; business keeps N/days; base never). Preview: expire-preview.",
        purpose="deletes",
    ),
    Spec(
        "expire-preview",
        "expire",
        None,
        None,
        "Dry run, deletes nothing: what the tier policies would delete and which repositories they "
        "would remove. dry_run is fixed to true.",
        parameters={"dry_run": True},  # shown in every run's parameters; the only value allowed
        preview=True,
        purpose="preview",
    ),
    Spec(
        "replicate-every-15-min",
        "replicate",
        "*/15 * * * *",
        1,
        "Every 15 minutes: copy what differs from each rule's source to its targets, byte for byte "
        "(same digests); deletes extraneous target tags only with deleteExtraneous.",
        purpose="writes",
    ),
    Spec(
        "replicate-preview",
        "replicate",
        None,
        None,
        "Dry run, writes nothing: what replication would copy (and delete, with deleteExtraneous) "
        "on each target. dry_run is fixed to true.",
        parameters={"dry_run": True},  # shown in every run's parameters; the only value allowed
        preview=True,
        purpose="preview",
    ),
    Spec(
        "restore-manual",
        "restore",
        None,
        1,
        "By hand: restore tags from a backup snapshot. A dry run unless dry_run is set to false.",
        purpose="writes",
    ),
    Spec(
        "backtest-manual",
        "backtest",
        None,
        None,
        "By hand, deletes nothing: which images the gc or expire rules would delete that were pulled "
        "(or run in Kubernetes) afterwards, replayed over the pull history; a regret report.",
    ),
    Spec(
        "undo-manual",
        "undo",
        None,
        1,
        "By hand: put a run's deletes back from the quarantine (run_id from the gc / expire report or "
        "`regkeeper quarantine list`). A dry run unless dry_run is set to false.",
        purpose="writes",
    ),
    # every 5 minutes: storage + thresholds + tag counts only; the nightly run adds the inventory
    Spec(
        "capacity-every-5-min",
        "capacity",
        "*/5 * * * *",
        None,
        "Every 5 minutes: measure storage, alert at 80% / 90%, forecast days to full, notice a "
        "registry that refuses writes (cheap: no inventory scan).",
        parameters={"logical_usage": False},
    ),
    Spec(
        "nightly-all-jobs",
        "nightly",
        "0 2 * * *",
        1,
        "Inactive by default: backup, gc, expire, replicate, capacity in order as subflows, with one "
        "combined report. Activate it INSTEAD of the separate schedules.",
        active=False,
        purpose="deletes",
    ),
)


def timezone_from_env() -> str:
    return os.environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE


def load_flow(spec: Spec):
    if spec.preview:
        import importlib

        return getattr(importlib.import_module(spec.module), spec.function)
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
                name=spec.name,
                description=spec.description,
                schedules=schedules,
                concurrency_limit=spec.concurrency_limit,
                parameters=dict(spec.parameters),
                tags=spec.tags,
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
