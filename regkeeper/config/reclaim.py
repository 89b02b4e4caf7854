"""``mirrorRepositories[].reclaim``: how blob storage is reclaimed after manifest deletes, and the
safety rules checked at load: garbage-collect only inside a read-only window that closes again."""

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
    kubernetes-job: run garbage-collect as a Kubernetes Job from ``jobTemplate``.

    Safety (refused at load):
    - ``mode: command`` or ``kubernetes-job`` without ``readOnly`` would run garbage-collect on a
      live, writable registry: a push landing meanwhile can lose blobs its new manifest needs
      (distribution's docs: garbage-collect must run read-only). ``liveGarbageCollect: true`` is the explicit
      acknowledgement that allows it; set it only when nothing can push, e.g. a demo, or a
      registry whose clients are stopped for the run.
    - ``readOnly`` without ``readWrite``: a read-only window that can never close."""

    mode: Literal["none", "command", "kubernetes-job"] = "none"
    read_only: list[str] | None = Field(None, alias="readOnly")
    garbage_collect: list[str] | None = Field(None, alias="garbageCollect")
    read_write: list[str] | None = Field(None, alias="readWrite")
    job_template: str | None = Field(None, alias="jobTemplate")
    namespace: str | None = None
    timeout: Duration = timedelta(minutes=30)
    live_garbage_collect: bool = Field(False, alias="liveGarbageCollect")

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "command" and not self.garbage_collect:
            raise ValueError("reclaim.garbageCollect is required when mode is 'command'")
        if self.mode == "kubernetes-job" and not self.job_template:
            raise ValueError("reclaim.jobTemplate is required when mode is 'kubernetes-job'")
        if self.mode != "none" and not self.read_only and not self.live_garbage_collect:
            raise ValueError(
                f"readOnly: required with mode {self.mode!r}: without it garbageCollect runs on a live, "
                "writable registry and a push landing meanwhile can lose blobs (garbage-collect must "
                "run read-only). Give readOnly and readWrite commands, or set liveGarbageCollect: true "
                "only when nothing can push (e.g. a demo, or a registry whose clients are stopped)"
            )
        if self.mode != "none" and self.read_only and not self.read_write:
            raise ValueError(
                "readWrite: required when readOnly is given: without it the registry "
                "stays read-only after garbage-collect (a window that never closes)"
            )
        return self


def _reclaim(v):
    if isinstance(v, str):
        return {"mode": v}
    return v
