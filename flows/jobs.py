"""The jobs map: job name -> flow, and which parameters the flow takes.

The one place the CLI (``regkeeper run <job>``), the nightly flow and the deployments
(``deployments/serve.py``, ``deployments/prefect.yaml``) learn which flows exist. Importing this
module imports no flow (and no Prefect): ``flow_of`` imports the flow's module when asked.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from regkeeper.config import Config


@dataclass(frozen=True)
class Job:
    name: str  # the flow's name and the function's name
    module: str  # where the flow function lives
    registry: bool = True  # takes a ``registry`` parameter
    force: bool = False  # takes ``force`` (overrides the blast-radius cap)
    dry_run_default: bool = False  # restore is a dry run unless asked to apply
    configured: Optional[Callable[[Config], Optional[str]]] = None  # None, or why it is skipped

    @property
    def entrypoint(self) -> str:
        """The file-path entrypoint prefect.yaml uses (``flows/gc.py:gc``)."""
        return f"{self.module.replace('.', '/')}.py:{self.name}"

    def why_skipped(self, cfg: Config) -> Optional[str]:
        """None when the job's config section is there; else why the job has nothing to do."""
        return self.configured(cfg) if self.configured else None

    def kwargs(
        self,
        *,
        config_path: Optional[str],
        dry_run: bool,
        registry: Optional[str] = None,
        force: bool = False,
        **extra: Any,
    ) -> dict:
        """The flow's keyword arguments for a run (only the parameters it takes)."""
        kw: dict[str, Any] = {"config_path": config_path, "dry_run": dry_run}
        if self.registry:
            kw["registry"] = registry
        if self.force:
            kw["force"] = force
        kw.update({k: v for k, v in extra.items() if v is not None})
        return kw


def _missing(section: str, present: Callable[[Config], Any]) -> Callable[[Config], Optional[str]]:
    def why(cfg: Config) -> Optional[str]:
        return None if present(cfg) else f"no {section} in the config"

    return why


JOBS: dict[str, Job] = {
    j.name: j
    for j in (
        Job("gc", "flows.gc", force=True, configured=_missing("gc section", lambda c: c.gc)),
        Job("expire", "flows.expire", force=True, configured=_missing("tiers", lambda c: c.tiers)),
        Job(
            "replicate",
            "flows.replicate",
            registry=False,
            force=True,
            configured=_missing("replication rules", lambda c: c.replication),
        ),
        Job("backup", "flows.backup", configured=_missing("backup section", lambda c: c.backup)),
        Job(
            "restore",
            "flows.backup",
            dry_run_default=True,
            configured=_missing("backup section", lambda c: c.backup),
        ),
        Job("capacity", "flows.capacity", configured=_missing("capacity section", lambda c: c.capacity)),
        Job(
            "undo",
            "flows.undo",
            dry_run_default=True,
            configured=_missing("quarantine section", lambda c: c.quarantine),
        ),
        Job("nightly", "flows.nightly", force=True),
        # reads only (a dry run always): the rules' regret over the pull history
        Job("backtest", "flows.backtest", configured=_missing("pulls section", lambda c: c.pulls)),
    )
}

# The order nightly runs its jobs in: a backup before anything deletes; capacity last, so it
# measures what gc, expire and replicate left.
NIGHTLY_ORDER: tuple[str, ...] = ("backup", "gc", "expire", "replicate", "capacity")


def flow_of(name: str):
    """The flow function of a job (imports its module, and so Prefect)."""
    job = JOBS[name]
    return getattr(importlib.import_module(job.module), job.name)
