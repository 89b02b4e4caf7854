"""``runner``: where a flow run's tasks (one per batch of repositories) execute.

``threads`` (the default): a thread pool inside the flow run's process. ``dask``: Dask workers,
either an existing cluster (``address``) or a local cluster of ``workers`` processes started for
the run. The environment variable ``REGKEEPER_TASK_RUNNER`` (``threads``, ``dask`` or a scheduler
address such as ``tcp://dask-scheduler:8786``) overrides the file, so a deployment can choose
without another config file (:func:`effective_runner`).
"""

import re
from typing import Literal

from pydantic import Field, model_validator

from ..errors import ConfigError
from .model import _Model

RUNNER_ENV = "REGKEEPER_TASK_RUNNER"
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://\S+$")


class RunnerConfig(_Model):
    type: Literal["threads", "dask"] = "threads"
    # threads: tasks at once in the flow run's process
    threads: int = Field(4, ge=1, le=256)
    # dask: the scheduler of an existing cluster; without it a local cluster per flow run
    address: str | None = None
    # dask without address: the local cluster's worker processes and threads in each
    workers: int = Field(2, ge=1, le=256)
    threads_per_worker: int = Field(1, alias="threadsPerWorker", ge=1, le=64)

    @model_validator(mode="after")
    def _check(self):
        if self.address is not None:
            if self.type != "dask":
                raise ValueError("address applies only with type: dask")
            if not _ADDRESS.match(self.address):
                raise ValueError(
                    f"address {self.address!r} is not a Dask scheduler address (e.g. tcp://dask-scheduler:8786)"
                )
        return self

    def describe(self) -> str:
        if self.type == "threads":
            return f"threads ({self.threads})"
        if self.address:
            return f"dask at {self.address}"
        return f"dask (local cluster: {self.workers} worker processes x {self.threads_per_worker} threads)"


def effective_runner(cfg: RunnerConfig | None, env: str | None) -> RunnerConfig:
    """The file's ``runner`` section with ``REGKEEPER_TASK_RUNNER`` (``env``) applied: ``threads``,
    ``dask`` (a local cluster unless the file names an address) or a scheduler address."""
    base = cfg or RunnerConfig()
    value = (env or "").strip()
    if not value:
        return base
    fields = base.model_dump(by_alias=False)
    if value == "threads":
        fields.update(type="threads", address=None)
    elif value == "dask":
        fields.update(type="dask")
    elif _ADDRESS.match(value):
        fields.update(type="dask", address=value)
    else:
        raise ConfigError(
            f"{RUNNER_ENV}={value!r}: expected threads, dask or a Dask scheduler address (tcp://host:8786)"
        )
    return RunnerConfig.model_validate(fields)
