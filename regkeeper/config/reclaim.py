"""``mirrorRepositories[].reclaim``: how blob storage is reclaimed after manifest deletes."""

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from .model import _Model
from .units import Duration


class ReclaimConfig(_Model):
    """How blob storage is reclaimed after manifest deletes.

    none: do nothing (report bytes as 'pending registry garbage-collect').
    command: run ``readOnly`` (switch the registry read-only), ``garbageCollect``, then
      ``readWrite`` (switch back), each an argv list; the registry refuses pushes meanwhile.
    kubernetes-job: run garbage-collect as a Kubernetes Job from ``jobTemplate``."""
    mode: Literal["none", "command", "kubernetes-job"] = "none"
    read_only: list[str] | None = Field(None, alias="readOnly")
    garbage_collect: list[str] | None = Field(None, alias="garbageCollect")
    read_write: list[str] | None = Field(None, alias="readWrite")
    job_template: str | None = Field(None, alias="jobTemplate")
    namespace: str | None = None
    timeout: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "command" and not self.garbage_collect:
            raise ValueError("reclaim.garbageCollect is required when mode is 'command'")
        if self.mode == "kubernetes-job" and not self.job_template:
            raise ValueError("reclaim.jobTemplate is required when mode is 'kubernetes-job'")
        return self


def _reclaim(v):
    if isinstance(v, str):
        return {"mode": v}
    return v
