"""gc and expire: one pipeline (inventory -> Kubernetes in-use -> plan -> cap -> delete ->
reclaim -> verify -> report), Prefect-free; flows compose the steps.

- ``pipeline``: the steps (read_kubernetes, gc_plan / expire_plan, release_plan / run_release
  of the quarantine, delete_batch, run_reclaim, run_verify, refuse).
- ``delete``: THE one delete path (re-check before deleting, reference-depth order, 404 = gone,
  405 = stop).
- ``reclaim``: blob reclamation, command mode (readOnly -> garbage-collect -> readWrite always,
  never ``--delete-untagged``), storage measured; ``gcjob``: the kubernetes-job mode.
- ``verify``: kept tags and their images (index children, blobs) still answer; a kept tag a
  user moved during the run is information when its new image is whole.
- ``report``: the run report.

``check_cap(plan, force)`` here is the gc / expire wrapper ``policy.cap.check_plan_cap`` over the
one cap check (``policy.cap.check_cap``, which takes the numbers).
"""

from ..policy.cap import check_plan_cap as check_cap
from .delete import DeleteResult, changed_since_plan, delete_manifests
from .gcjob import load_job_template, run_gc_job
from .pipeline import (
    KubeState,
    delete_batch,
    expire_plan,
    gc_plan,
    planned_tag_deletes,
    read_kubernetes,
    refuse,
    release_plan,
    run_reclaim,
    run_release,
    run_verify,
)
from .reclaim import ReclaimResult, check_gc_argv, storage_bytes
from .referrers import needs_repair
from .report import build_report
from .verify import VerifyResult, verify_kept

__all__ = [
    "DeleteResult",
    "KubeState",
    "ReclaimResult",
    "VerifyResult",
    "build_report",
    "changed_since_plan",
    "check_cap",
    "check_gc_argv",
    "delete_batch",
    "delete_manifests",
    "expire_plan",
    "gc_plan",
    "load_job_template",
    "needs_repair",
    "planned_tag_deletes",
    "read_kubernetes",
    "refuse",
    "release_plan",
    "run_release",
    "run_gc_job",
    "run_reclaim",
    "run_verify",
    "storage_bytes",
    "verify_kept",
]
