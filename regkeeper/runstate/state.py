"""The run state of one run: where the state directory is (``Config.state_path``), who this run
is (its :class:`Owner`), the lease time-to-live (``leaseTtl``), and the durable count of
read-only windows recovered per registry (``recovered.jsonl``, one line per recovery)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..util import utcnow
from .lease import Lease
from .owner import Owner
from .records import StateError, fsync_dir


@dataclass
class RunState:
    root: Path
    owner: Owner
    ttl: float = 120.0

    @classmethod
    def for_config(cls, config, owner: Owner) -> "RunState":
        return cls(Path(config.state_path()), owner, config.lease_ttl.total_seconds())

    def lease(self, name: str, data: dict | None = None) -> Lease:
        return Lease(self.root, name, self.owner, self.ttl, data)

    # ------------------------------------------------------------------ recoveries

    @property
    def _log(self) -> Path:
        return self.root / "recovered.jsonl"

    def record_recovery(self, registry: str, window_run: str, what: str = "readonly") -> None:
        line = (
            json.dumps(
                {
                    "registry": registry,
                    "kind": what,
                    "run": window_run,
                    "by": self.owner.run,
                    "at": utcnow().isoformat(),
                }
            )
            + "\n"
        )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self._log, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StateError(f"state directory: cannot append to {self._log}: {e.strerror or e}") from None
        fsync_dir(self.root)

    def recovered_count(self, registry: str, what: str = "readonly") -> int:
        try:
            lines = self._log.read_text().splitlines()
        except OSError:
            return 0
        n = 0
        for ln in lines:
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            n += d.get("registry") == registry and d.get("kind", "readonly") == what
        return n
