"""Run context: the loaded config plus one OCI client and storage reader per registry.

Every job (CLI or Prefect flow) starts from ``load_context(config_path)``. Clients share the
digest cache directory, so content fetched by one run is never fetched again by the next.
"""

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import DigestCache
from .config import Config, check_secrets, load_config
from .errors import ConfigError
from .oci import RegistryClient
from .storage import StorageReader, storage_for

if TYPE_CHECKING:
    from .quarantine import Quarantine
    from .runstate import Owner

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAMES = ("regkeeper.yaml", "regkeeper.yml")


def resolve_config_path(path: str | os.PathLike | None) -> Path:
    """Explicit path, else $REGKEEPER_CONFIG, else ./regkeeper.yaml."""
    if path:
        return Path(path)
    env = os.environ.get("REGKEEPER_CONFIG")
    if env:
        return Path(env)
    for n in DEFAULT_CONFIG_NAMES:
        if Path(n).exists():
            return Path(n)
    raise ConfigError(
        "no config file: pass --config FILE (or the flow's config_path parameter), "
        "or set REGKEEPER_CONFIG, or create ./regkeeper.yaml"
    )


class RunContext:
    def __init__(self, config: Config):
        self.config = config
        self.cache = DigestCache(config.cache_path())
        self._clients: dict[str, RegistryClient] = {}
        self._storages: dict[str, StorageReader | None] = {}
        self._quarantines: dict[str, Quarantine] = {}
        self._lock = threading.Lock()
        self.owner: Owner | None = None  # this run as owner of durable run state

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "RunContext":
        return cls(load_config(resolve_config_path(path)))

    def registry_name(self, name: str | None, section_default: str | None = None) -> str:
        """The registry a run acts on: the parameter, else the section's, else the first."""
        return self.config.registry(name or section_default).name

    def job_registry(self, job: str, name: str | None = None) -> str:
        """The registry a gc or expire run (or its backtest) acts on: the parameter, else
        ``gc.registry`` (gc) or ``expire.registry``, else ``gc.registry`` (expire), else the first."""
        gc = self.config.gc.registry if self.config.gc else None
        own = self.config.expire.registry if job == "expire" and self.config.expire else None
        return self.registry_name(name, own or gc)

    def client(self, name: str | None = None) -> RegistryClient:
        rc = self.config.registry(name)
        with self._lock:
            if rc.name not in self._clients:
                check_secrets(self.config, rc.name)
                client = RegistryClient.from_config(rc, cache=self.cache)
                client.apart = self.config.quarantine_namespace()
                self._clients[rc.name] = client
            return self._clients[rc.name]

    def storage(self, name: str | None = None) -> StorageReader | None:
        rc = self.config.registry(name)
        with self._lock:
            if rc.name not in self._storages:
                self._storages[rc.name] = storage_for(rc)
            return self._storages[rc.name]

    def quarantine(self, name: str | None = None) -> "Quarantine | None":
        """This run's quarantine of a registry (every delete held, undoable), or None when the
        config's ``quarantine`` section is off. The run id is this run's owner's."""
        qc = self.config.quarantine
        if qc is None or not qc.enabled:
            return None
        from .quarantine import Quarantine
        from .runstate import Owner

        rc = self.config.registry(name)
        with self._lock:
            if self.owner is None:
                self.owner = Owner.current("regkeeper")
            if rc.name not in self._quarantines:
                self._quarantines[rc.name] = Quarantine(qc, rc.name, self.owner.run)
            return self._quarantines[rc.name]

    def reports_dir(self) -> Path:
        return self.config.reports_dir()

    def run_state(self, job: str = "regkeeper"):
        """This run's durable run state (``regkeeper.runstate``): the state directory and this
        run as owner (set by the flow's recovery hook from its flow run; else a fresh one)."""
        from .runstate import Owner, RunState

        if self.owner is None:
            self.owner = Owner.current(job)
        return RunState.for_config(self.config, self.owner)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()

    # A task argument: a process worker (Dask) gets the config and this run's owner, and builds
    # its own clients, sessions and caches on first use. Secret values are not pickled.
    def __getstate__(self) -> dict:
        return {"config": self.config, "owner": self.owner}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])  # type: ignore[misc]
        self.owner = state["owner"]


def load_context(path: str | os.PathLike | None = None) -> RunContext:
    return RunContext.load(path)
