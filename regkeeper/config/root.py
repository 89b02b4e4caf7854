"""The whole file (:class:`Config`): its sections, the cross-references between them (every
registry name a section uses must exist), and registry lookups and paths derived from it
(reports, the digest cache, and the run-state directory of ``regkeeper.runstate``)."""

import difflib
import os
from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator

from ..errors import ConfigError
from .jobs import (
    BackupConfig,
    CapacityConfig,
    ExpireConfig,
    GCConfig,
    KubernetesConfig,
    ReplicationRule,
    ReportsConfig,
    TierConfig,
)
from .model import _Model
from .pulls import PullsConfig
from .quarantine import QuarantineConfig
from .registries import RegistryConfig
from .runner import RunnerConfig
from .units import Duration


class Config(_Model):
    mirror_repositories: list[RegistryConfig] = Field(alias="mirrorRepositories", min_length=1)
    tiers: list[TierConfig] = Field(default_factory=list)
    gc: GCConfig | None = None
    expire: ExpireConfig | None = None
    replication: list[ReplicationRule] = Field(default_factory=list)
    backup: BackupConfig | None = None
    capacity: CapacityConfig | None = None
    kubernetes: KubernetesConfig | None = None
    pulls: PullsConfig | None = None  # the pull-event receiver and store (regkeeper/pulls/)
    # deletes held (undoable) for a window before bytes are reclaimed (regkeeper/quarantine/)
    quarantine: QuarantineConfig | None = None
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    cache_dir: str | None = Field(None, alias="cacheDir")
    # durable run state (leases, read-only windows): see regkeeper.runstate. Workers on several
    # machines must share it (a shared volume), or they cannot see each other's leases.
    state_dir: str | None = Field(None, alias="stateDir")
    lease_ttl: Duration = Field(timedelta(minutes=2), alias="leaseTtl")
    # where a flow run's tasks execute: threads (default) or Dask (regkeeper/config/runner.py)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    # set by load_config, not from YAML
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _refs(self):
        names = [r.name for r in self.mirror_repositories]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate registry name(s): {', '.join(sorted(dupes))}")
        known = set(names)

        def need(where: str, name: str | None):
            if name is not None and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
                raise ValueError(f"{where}: unknown registry {name!r}{hint}")

        def usable(where: str, name: str | None, job: str):
            need(where, name)
            why = self.registry(name).proxy_refusal(job) if name is not None else None
            if why:
                raise ValueError(f"{where}: registry {name!r} is type proxy: {why}")

        if self.gc:
            need("gc.registry", self.gc.registry)
            self._gc_on_a_proxy()
        if self.expire:
            usable("expire.registry", self.expire.registry, "expire")
        for i, r in enumerate(self.replication):
            usable(f"replication[{i}].from", r.from_, "replicate from")
            for t in r.to:
                usable(f"replication[{i}].to", t, "replicate to")
        if self.backup:
            for n in self.backup.registries or []:
                usable("backup.registries", n, "backup")
            need("backup.blobSource", self.backup.blob_source)
        if self.kubernetes:
            for n in self.kubernetes.registry_aliases:
                need("kubernetes.registryAliases", n)
        tier_names = [t.name for t in self.tiers]
        if self.expire and self.expire.default_tier and self.expire.default_tier not in tier_names:
            raise ValueError(f"expire.defaultTier: unknown tier {self.expire.default_tier!r}")
        self._pulls_needed()
        if self.lease_ttl < timedelta(seconds=5):
            raise ValueError("leaseTtl: must be at least 5s (a lease is renewed every quarter of it)")
        return self

    def _gc_on_a_proxy(self) -> None:
        """gc of a proxy registry is cache eviction: the gc section's tag rules would be ignored."""
        assert self.gc is not None
        if self.gc.registry is None or self.registry(self.gc.registry).type != "proxy":
            return
        fields = type(self.gc).model_fields
        ignored = [fields[f].alias or f for f in self.gc.model_fields_set if f != "registry"]
        if ignored:
            raise ValueError(
                f"gc.{sorted(ignored)[0]}: does not apply to registry {self.gc.registry!r}: it is type "
                "proxy and its gc is cache eviction (mirrorRepositories[].proxyCache.pulledWithin, "
                "proxyCache.maxBytes)"
            )

    def _pulls_needed(self) -> None:
        """``pulledWithin`` reads the pull history: without a ``pulls`` section there is none."""
        users = [f"tiers[{i}].pulledWithin" for i, t in enumerate(self.tiers) if t.pulled_within]
        for i, t in enumerate(self.tiers):
            users += [f"tiers[{i}].rules[{j}].keep.pulledWithin" for j in _pull_rules(t.rules)]
        if self.gc and self.gc.pulled_within:
            users.insert(0, "gc.pulledWithin")
        if self.gc:
            users[:0] = [f"gc.rules[{j}].keep.pulledWithin" for j in _pull_rules(self.gc.rules)]
        if users and self.pulls is None:
            raise ValueError(f"{users[0]}: needs a `pulls` section (the pull-event store it reads)")

    def pulls_store_url(self) -> str:
        """``pulls.store``, else ``sqlite:///<stateDir>/pulls.sqlite``."""
        url = self.pulls.store_url() if self.pulls is not None else None
        if url:
            return url
        return f"sqlite:///{self.state_path() / 'pulls.sqlite'}"

    def quarantine_namespace(self) -> str | None:
        """The quarantine's namespace when a ``quarantine`` section exists (even with the window
        at 0: what it still holds stays apart from every job); else None."""
        return self.quarantine.namespace if self.quarantine is not None else None

    def registry(self, name: str | None = None) -> RegistryConfig:
        """The named registry, or the first one when name is None."""
        if name is None:
            return self.mirror_repositories[0]
        for r in self.mirror_repositories:
            if r.name == name:
                return r
        close = difflib.get_close_matches(name, [r.name for r in self.mirror_repositories], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{self.source or 'config'}: no registry named {name!r} in mirrorRepositories{hint}"
        )

    def registry_hosts(self, name: str) -> set[str]:
        """Every host name a registry is reached under (URL host, hosts, kubernetes aliases)."""
        r = self.registry(name)
        hosts = {r.host} if r.host else set()
        hosts.update(r.hosts)
        if self.kubernetes:
            hosts.update(self.kubernetes.registry_aliases.get(name, []))
        return {h.lower() for h in hosts if h}

    def reports_dir(self) -> Path:
        p = Path(self.reports.directory)
        if not p.is_absolute() and self.source:
            # relative to the working directory, like every other CLI tool
            p = Path.cwd() / p
        return p

    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(os.path.expanduser(self.cache_dir))
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return Path(base) / "regkeeper"

    def state_path(self) -> Path:
        """``stateDir``; else next to an explicit ``cacheDir`` (``<cacheDir>-state``); else
        ``$XDG_STATE_HOME/regkeeper`` (``~/.local/state/regkeeper``)."""
        if self.state_dir:
            return Path(os.path.expanduser(self.state_dir))
        if self.cache_dir:
            cache = Path(os.path.expanduser(self.cache_dir))
            return cache.with_name(cache.name + "-state")
        base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return Path(base) / "regkeeper"


def _pull_rules(rules) -> list[int]:
    """Indexes of the ordered rules that keep by ``pulledWithin``."""
    return [j for j, r in enumerate(rules or []) if r.keep and r.keep.pulled_within is not None]
