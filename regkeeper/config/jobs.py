"""The job sections: ``tiers``, ``gc``, ``expire``, ``replication``, ``backup``, ``capacity``
(with its ``notify`` targets), ``kubernetes`` and ``reports``."""

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .model import _Model
from .rulesets import RuleConfig
from .secrets import SecretStr
from .units import Duration, format_duration, parse_duration


class TierConfig(_Model):
    name: str
    match: list[str] = Field(min_length=1)
    keep: Literal["forever"] | None = None
    keep_last: int | None = Field(None, alias="keepLast", ge=0)
    keep_days: int | None = Field(None, alias="keepDays", ge=0)
    ttl: Duration | None = None
    delete_repository: bool = Field(False, alias="deleteRepository")
    protect: list[str] = Field(default_factory=list)
    # keep an image pulled within this window (needs the `pulls` section; keepLast/keepDays only)
    pulled_within: Duration | None = Field(None, alias="pulledWithin")
    rules: list[RuleConfig] | None = None  # ordered rules (config/rulesets.py), instead of the keys above

    @model_validator(mode="after")
    def _one_policy(self):
        kinds = [
            self.keep is not None,
            self.keep_last is not None or self.keep_days is not None,
            self.ttl is not None,
            self.rules is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError(
                "a tier needs exactly one policy: keep: forever, keepLast/keepDays, ttl, or rules"
            )
        if self.rules is not None and not self.rules:
            raise ValueError("rules: needs at least one rule")
        if self.delete_repository and self.ttl is None:
            raise ValueError("deleteRepository only applies with ttl")
        if self.pulled_within is not None and not kinds[1]:
            raise ValueError(
                "pulledWithin only applies to a keepLast/keepDays tier (with rules: keep: {pulledWithin: …} in a rule)"
            )
        return self


class GCConfig(_Model):
    registry: str | None = None
    days: int = Field(30, ge=0)
    keep_last: int = Field(5, alias="keepLast", ge=0)
    protect: list[str] = Field(default_factory=lambda: ["latest"])
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)
    max_delete_fraction: float = Field(0.5, alias="maxDeleteFraction", gt=0, le=1)
    delete_untagged: bool = Field(True, alias="deleteUntagged")
    untagged_grace: Duration = Field(timedelta(hours=1), alias="untaggedGrace")
    # keep an image pulled within this window (needs the `pulls` section)
    pulled_within: Duration | None = Field(None, alias="pulledWithin")
    rules: list[RuleConfig] | None = None  # ordered rules (config/rulesets.py), instead of days/keepLast

    @model_validator(mode="after")
    def _rules_alone(self):
        if self.rules is None:
            return self
        if not self.rules:
            raise ValueError("rules: needs at least one rule")
        legacy = {"days": "days", "keep_last": "keepLast", "pulled_within": "pulledWithin"}
        legacy["delete_untagged"] = "deleteUntagged"
        clash = [alias for name, alias in legacy.items() if name in self.model_fields_set]
        if clash:
            raise ValueError(
                f"rules: cannot be combined with {', '.join(clash)} (say it in a rule: "
                "keep.last, keep.newerThan, keep.pulledWithin, delete.olderThan, tagStatus: untagged)"
            )
        return self


class ExpireConfig(_Model):
    registry: str | None = None
    default_tier: str | None = Field(None, alias="defaultTier")
    max_delete_fraction: float = Field(0.5, alias="maxDeleteFraction", gt=0, le=1)
    untagged_grace: Duration = Field(timedelta(hours=1), alias="untaggedGrace")


class TagFilter(_Model):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class ReplicationRule(_Model):
    name: str | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)
    tags: TagFilter = Field(default_factory=TagFilter)
    prefix: str = ""
    delete_extraneous: bool = Field(False, alias="deleteExtraneous")
    # deleteExtraneous's cap: at most this fraction of the rule's in-scope target tags per run
    # without force (its own key, not gc's)
    max_delete_fraction: float = Field(0.5, alias="maxDeleteFraction", gt=0, le=1)
    concurrency: int = Field(8, ge=1, le=64)

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v):
        return [v] if isinstance(v, str) else v

    @property
    def rule_name(self) -> str:
        return self.name or f"{self.from_}-to-{'+'.join(self.to)}"


class BackupConfig(_Model):
    target: str = "file://./backups"
    keep: int = Field(14, ge=1)
    registries: list[str] | None = None
    endpoint: str | None = None
    access_key: SecretStr | None = Field(None, alias="accessKey")
    secret_key: SecretStr | None = Field(None, alias="secretKey")
    region: str = "us-east-1"
    blob_source: str | None = Field(None, alias="blobSource")

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if not re.match(r"^(s3://[^/]+(/.*)?|file://.+)$", v):
            raise ValueError(f"target must be s3://bucket/prefix or file:///path, got {v!r}")
        return v


class NotifyConfig(_Model):
    webhook: SecretStr
    format: Literal["slack", "alertmanager"] = "slack"


class AutomationConfig(_Model):
    """``capacity.automation``: the Prefect automation ``regkeeper alerts install`` creates, which
    calls ``webhook`` (a secret reference) on every capacity and read-only event."""

    webhook: SecretStr
    format: Literal["slack", "json"] = "slack"  # slack: {"text": ...}; json: {"subject", "body"}
    block: str = Field("regkeeper-alerts", min_length=1)  # the Custom Webhook block's name
    name: str = Field("regkeeper capacity alerts", min_length=1)  # the automation's name


class CapacityConfig(_Model):
    warn: float = Field(0.80, gt=0, le=1)
    critical: float = Field(0.90, gt=0, le=1)
    notify: list[NotifyConfig] = Field(default_factory=list)
    pushgateway: str | None = None
    # the usage-history CSV the forecast reads (default <reports.directory>/capacity/history.csv;
    # a relative path is relative to the working directory, like reports.directory)
    history: str | None = None
    history_retention: Duration = Field(timedelta(days=90), alias="historyRetention")
    forecast_window: Duration = Field(timedelta(days=14), alias="forecastWindow")
    # each run starts (and cancels) a blob upload to learn whether the registry refuses writes
    # (read-only mode left on); proxy registries are never checked (they refuse pushes anyway)
    write_check: bool = Field(True, alias="writeCheck")
    write_check_repository: str = Field("regkeeper/write-check", alias="writeCheckRepository")
    automation: AutomationConfig | None = None  # `regkeeper alerts install`

    @field_validator("history")
    @classmethod
    def _history_is_a_path(cls, v):
        if v is None:
            return v
        try:
            parse_duration(v)
        except ValueError:
            return os.path.expanduser(v)
        raise ValueError(
            f"expected the usage-history file's path (e.g. /var/lib/regkeeper/capacity-history.csv), "
            f"not {v!r}; for how long history is kept use capacity.historyRetention ({v})"
        )

    @model_validator(mode="after")
    def _order(self):
        if self.warn >= self.critical:
            raise ValueError(f"warn ({self.warn}) must be below critical ({self.critical})")
        if self.history_retention < self.forecast_window:
            raise ValueError(
                f"historyRetention ({format_duration(self.history_retention)}) must be at least "
                f"forecastWindow ({format_duration(self.forecast_window)}): the forecast reads that much history"
            )
        return self

    def history_file(self, reports_dir: Path) -> Path:
        """The usage-history CSV: ``history``, else ``<reports_dir>/capacity/history.csv``."""
        if not self.history:
            return Path(reports_dir) / "capacity" / "history.csv"
        p = Path(self.history)
        return p if p.is_absolute() else Path.cwd() / p


class KubernetesConfig(_Model):
    kubeconfig: str | None = None
    contexts: list[str] = Field(default_factory=list)
    fail_closed: bool = Field(True, alias="failClosed")
    registry_aliases: dict[str, list[str]] = Field(default_factory=dict, alias="registryAliases")
    snapshot: str | None = None  # a recorded snapshot file instead of a live cluster (demo)
    timeout: Duration = timedelta(seconds=30)

    @field_validator("kubeconfig", "snapshot")
    @classmethod
    def _expand(cls, v):
        return os.path.expanduser(v) if v else v


class ReportsConfig(_Model):
    directory: str = "reports"
