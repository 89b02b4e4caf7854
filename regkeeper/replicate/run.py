"""One target of a rule, end to end in one process: plan, check the delete cap (the rule's
``maxDeleteFraction``), then (unless a dry run) copy, save mount hints, verify if asked, delete
extraneous tags through the one delete path. Used by the benchmark and tests; the flow runs the
same steps as separate Prefect tasks (flows/replicate.py).
"""

import os
import time
from collections import Counter

from ..config import ReplicationRule
from ..oci import RegistryClient
from .delete import check_delete_cap, delete_extraneous, record_deletes
from .execute import Replicator
from .plan import plan_replication
from .plan_model import ReplicationPlan
from .result import ReplicationResult, new_result
from .verify import verify_copied


def replicate_target(
    src: RegistryClient,
    dst: RegistryClient,
    rule: ReplicationRule,
    target_name: str | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    max_delete_fraction: float | None = None,
    attempts: int = 3,
    backoff: float = 0.5,
    hints_path: str | os.PathLike | None = None,
    verify: bool = False,
    plan: ReplicationPlan | None = None,
    quarantine=None,
    **kw,
) -> ReplicationResult:
    """Plan, then (unless dry run) copy and delete, for one target of a rule. Used by the CLI
    path of the flow's tasks and by the benchmark; the flow splits the same steps into tasks.
    ``max_delete_fraction`` overrides the rule's ``maxDeleteFraction`` (default: the rule's);
    ``plan`` executes a plan made earlier instead of planning now. ``attempts``/``backoff`` bound
    the blob transfer's restarts of a broken blob stream; HTTP calls are retried by the clients'
    transports (their ``retries``), items never. ``quarantine``: the target's (deletes held)."""
    t0 = time.perf_counter()
    before = Counter(dst.stats)
    if plan is None:
        plan = plan_replication(src, dst, rule, target_name)
    result = ReplicationResult(plan=plan, dry_run=dry_run)
    frac = rule.max_delete_fraction if max_delete_fraction is None else max_delete_fraction
    refused = check_delete_cap(plan, frac, force) if rule.delete_extraneous else None
    result.deletes_refused = refused
    if dry_run:
        result.repositories = [new_result(p) for p in plan.repositories]
    else:
        rep = Replicator(
            src,
            dst,
            concurrency=rule.concurrency,
            attempts=attempts,
            backoff=backoff,
            hints_path=hints_path,
            **kw,
        )
        result.repositories = rep.copy(plan.repositories)
        rep.save_hints()
        if verify:
            verify_copied(dst, plan.repositories, result.repositories, concurrency=rule.concurrency)
        if rule.delete_extraneous and not refused:
            deleted = delete_extraneous(
                dst, plan.repositories, max_workers=rule.concurrency, quarantine=quarantine
            )
            record_deletes(plan.repositories, {r.source_repo: r for r in result.repositories}, deleted)
            result.deletes_stopped = deleted.stopped
            result.note_held(deleted, quarantine.run if quarantine is not None else None)
    result.seconds = round(time.perf_counter() - t0, 3)
    result.target_requests = dict(Counter(dst.stats) - before)
    return result
