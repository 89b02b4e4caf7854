"""Configuration: one YAML file in the seed's shape, validated by pydantic.

Errors name the file, the key path (``mirrorRepositories[1].url``) and the line. Unknown keys
are rejected with the nearest valid key suggested. Sizes (``500Gi``) and durations (``72h``)
parse. Secret values are references (``env:NAME``, ``prefect-secret:NAME``, ``file:/path``),
resolved only when used and masked in every repr, log line and exception.

Where things live:
  units.py       sizes and durations (parse_size, parse_duration, Size, Duration)
  secrets.py     secret references, their resolvers and masking (Secret, SecretStr)
  model.py       the pydantic base every section shares (unknown keys refused)
  registries.py  mirrorRepositories[]: type, url, auth, tls, storage, s3 and proxy keys
  reclaim.py     mirrorRepositories[].reclaim: blob reclamation and its safety rules
  jobs.py        tiers, gc, expire, replication, backup, capacity, kubernetes, reports
  pulls.py       pulls: the pull-event receiver and store (pulledWithin reads it)
  root.py        Config: the sections and the cross-references between them
  runner.py      runner: threads or Dask for the flows' tasks (REGKEEPER_TASK_RUNNER)
  loader.py      YAML -> Config with file:line: key.path errors; parse_config, load_config
"""

from ..errors import ConfigError, SecretError
from .jobs import (
    AutomationConfig,
    BackupConfig,
    CapacityConfig,
    ExpireConfig,
    GCConfig,
    KubernetesConfig,
    NotifyConfig,
    ReplicationRule,
    ReportsConfig,
    TagFilter,
    TierConfig,
)
from .loader import check_secrets, load_config, parse_config
from .pulls import PullExclude, PullsConfig
from .quarantine import QuarantineConfig
from .reclaim import ReclaimConfig
from .registries import (
    AuthConfig,
    ProxyCacheConfig,
    RegistryConfig,
    StorageConfig,
    TLSConfig,
)
from .root import Config
from .runner import RUNNER_ENV, RunnerConfig, effective_runner
from .secrets import Secret, SecretStr, register_secret_resolver
from .units import Duration, Size, format_duration, parse_duration, parse_size

__all__ = [
    "AuthConfig",
    "BackupConfig",
    "AutomationConfig",
    "CapacityConfig",
    "Config",
    "ConfigError",
    "Duration",
    "ExpireConfig",
    "GCConfig",
    "KubernetesConfig",
    "NotifyConfig",
    "ProxyCacheConfig",
    "PullExclude",
    "PullsConfig",
    "QuarantineConfig",
    "ReclaimConfig",
    "RegistryConfig",
    "ReplicationRule",
    "ReportsConfig",
    "RUNNER_ENV",
    "RunnerConfig",
    "Secret",
    "SecretError",
    "SecretStr",
    "Size",
    "StorageConfig",
    "TLSConfig",
    "TagFilter",
    "TierConfig",
    "check_secrets",
    "effective_runner",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "register_secret_resolver",
]
