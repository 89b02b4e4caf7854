"""The flows' task runner: a thread pool (the default) or Dask, chosen per flow run.

Every flow is declared with ``task_runner=RegkeeperTaskRunner()``. The choice is made when the
run submits its first task: ``REGKEEPER_TASK_RUNNER`` (``threads``, ``dask`` or a scheduler
address), else the ``runner`` section of the run's config file (the flow's ``config_path``
parameter, resolved like the flow resolves it), else threads. ``dask`` needs the ``dask`` extra
(``pip install -e .[dask]``: prefect-dask); its workers import ``tasks``/``regkeeper``, receive
the run's config (never a resolved secret: each worker resolves references itself) and build
their own clients. Only submitted tasks (the per-batch scans, deletes, copies, verifies) go to
the workers; the flow's other steps run in the flow run's process.
"""

import os
import threading
from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from regkeeper.config import RUNNER_ENV, RunnerConfig, effective_runner, load_config
from regkeeper.context import resolve_config_path
from regkeeper.errors import ConfigError
from tasks.common import logger


def runner_for_run() -> RunnerConfig:
    """The runner of the current flow run: the environment over its config's ``runner``."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    params = dict(ctx.parameters or {}) if ctx else {}
    try:
        cfg = load_config(resolve_config_path(params.get("config_path"))).runner
    except ConfigError:
        cfg = None  # the flow itself reports its config error, naming the key
    return effective_runner(cfg, os.environ.get(RUNNER_ENV))


def build_task_runner(spec: RunnerConfig) -> TaskRunner:
    if spec.type == "threads":
        return ThreadPoolTaskRunner(max_workers=spec.threads)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            f"runner: {spec.describe()} needs prefect-dask: pip install 'regkeeper[dask]'"
        ) from None
    if spec.address:
        return DaskTaskRunner(address=spec.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": spec.workers,
            "threads_per_worker": spec.threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
    )


class RegkeeperTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """Delegates to a ThreadPoolTaskRunner or a DaskTaskRunner, built on the first submit.

    ``spec`` fixes the choice (tests, ``flow.with_options``); ``None`` decides per run
    (:func:`runner_for_run`)."""

    def __init__(self, spec: RunnerConfig | None = None):
        super().__init__()
        self.spec = spec
        self.chosen: RunnerConfig | None = None
        self._inner: TaskRunner | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> "RegkeeperTaskRunner":
        return type(self)(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegkeeperTaskRunner) and other.spec == self.spec

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        # cloudpickled with the flow when Prefect runs it in a subprocess: settings only
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def inner(self) -> TaskRunner:
        with self._lock:
            if self._inner is None:
                spec = self.spec or runner_for_run()
                runner = build_task_runner(spec)
                runner.__enter__()
                self.chosen, self._inner = spec, runner
                logger().info("tasks run on %s", spec.describe())
            return self._inner

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        inner = self.inner()
        if not isinstance(inner, ThreadPoolTaskRunner):
            # through Dask a parameter wrapped in Prefect's quote() reaches the task as a plain
            # tuple (prefect-dask 0.3.7, distributed 2026.8): send the value itself
            parameters = {k: v.unwrap() if isinstance(v, quote) else v for k, v in parameters.items()}
        return inner.submit(task, parameters, wait_for, dependencies)

    def cancel_all(self) -> None:
        inner = self._inner
        if inner is not None and hasattr(inner, "cancel_all"):
            inner.cancel_all()

    def __enter__(self) -> "RegkeeperTaskRunner":
        super().__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
        try:
            if inner is not None:
                inner.__exit__(exc_type, exc_value, traceback)
        finally:
            super().__exit__(exc_type, exc_value, traceback)
