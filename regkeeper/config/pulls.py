"""``pulls``: the pull-event receiver and its store (regkeeper/pulls/).

```yaml
pulls:
  store: sqlite:///var/lib/regkeeper/pulls.sqlite   # default: <stateDir>/pulls.sqlite
                                                   # or postgresql://..., or env:PULLS_STORE
                                                   # (a secret reference: a URL with a password)
  listen: 127.0.0.1:5080                           # regkeeper events serve
  token: env:PULL_EVENTS_TOKEN                     # the registry sends Authorization: Bearer <token>
  exclude: {userAgents: ["regkeeper/*", "skopeo/*", "trivy/*"]}
  heartbeat: 30s                                   # the receiver says it is alive this often
  gapTolerance: 10m                                # receiver silent longer than this = a gap
```

The registry posts to ``http://<listen>/events/<registry name>``: the path names the
``mirrorRepositories`` entry the events belong to.
"""

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from ..errors import SecretError
from .model import _Model
from .secrets import Secret, SecretStr
from .units import Duration

DEFAULT_EXCLUDED_AGENTS = ["regkeeper/*"]


class PullExclude(_Model):
    # user-agent globs (fnmatch, case-insensitive) whose pulls are not recorded
    user_agents: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDED_AGENTS), alias="userAgents")


class PullsConfig(_Model):
    store: str | None = None  # sqlite:///abs/path | postgresql://... (default: <stateDir>/pulls.sqlite)
    listen: str = "127.0.0.1:5080"
    token: SecretStr | None = None
    exclude: PullExclude = Field(default_factory=PullExclude)
    heartbeat: Duration = timedelta(seconds=30)
    gap_tolerance: Duration = Field(timedelta(minutes=10), alias="gapTolerance")
    # how long the per-day pull counts (the history `regkeeper backtest` replays) are kept; the
    # receiver prunes older days when it starts and once a day
    day_retention: Duration = Field(timedelta(days=400), alias="dayRetention")

    @field_validator("store")
    @classmethod
    def _store(cls, v):
        if v is None or re.match(r"^(env|file|prefect-secret):.+$", v):
            return v
        if not re.match(r"^(sqlite:///.+|postgres(ql)?://.+)$", v):
            raise ValueError(f"expected sqlite:///path or postgresql://user@host/db, got {v!r}")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v):
        m = re.match(r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$", v)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"expected host:port (e.g. 0.0.0.0:5080), got {v!r}")
        return v

    @model_validator(mode="after")
    def _times(self):
        if self.heartbeat <= timedelta(0):
            raise ValueError("heartbeat: must be positive")
        if self.gap_tolerance < 2 * self.heartbeat:
            raise ValueError("gapTolerance: must be at least twice the heartbeat")
        if self.day_retention < timedelta(days=1):
            raise ValueError("dayRetention: must be at least 1d")
        return self

    def store_url(self) -> str | None:
        """``store`` with a secret reference resolved (the URL may carry a password: never log it)."""
        if self.store is None or re.match(r"^(sqlite|postgres(ql)?)://", self.store):
            return self.store
        url = Secret(self.store, "pulls.store").get().strip()
        if not re.match(r"^(sqlite:///.+|postgres(ql)?://.+)$", url):
            raise SecretError(f"pulls.store: {self.store} does not hold a sqlite:/// or postgresql:// URL")
        return url

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
