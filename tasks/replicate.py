"""Tasks for replicate: scope, plan a batch of repositories, copy a batch, delete a batch,
verify a batch. Thin wrappers over regkeeper.replicate (all logic lives there)."""

from prefect import task

from regkeeper import replicate as core
from regkeeper.config import ReplicationRule
from regkeeper.context import RunContext
from regkeeper.quarantine.report import undo_command
from tasks.common import RETRY, logger


@task(name="replication-scope", task_run_name="scope {rule_name} -> {target}", **RETRY)
def scope(ctx: RunContext, rule: ReplicationRule, target: str, rule_name: str = "") -> tuple:
    """(source repositories in scope, repositories gone from the source, problems)."""
    repos, removed, errors = core.scope_repositories(ctx.client(rule.from_), ctx.client(target), rule)
    logger().info(
        "%s -> %s: %d repositories in scope%s",
        rule.rule_name,
        target,
        len(repos),
        f", {len(removed)} gone from the source" if removed else "",
    )
    return repos, removed, errors


@task(name="replication-plan-batch", task_run_name="plan {target} [{label}]", **RETRY)
def plan_batch(
    ctx: RunContext,
    rule: ReplicationRule,
    target: str,
    repositories: list[str],
    removed: list[str],
    label: str = "",
) -> core.ReplicationPlan:
    plan = core.plan_replication(
        ctx.client(rule.from_), ctx.client(target), rule, target, repositories=repositories, removed=removed
    )
    logger().info(
        "%s [%s]: %d to copy, %d in sync, %d extraneous",
        target,
        label,
        plan.to_copy,
        plan.in_sync,
        plan.extraneous,
    )
    return plan


@task(name="replication-copy-batch", task_run_name="copy {target} [{label}]", **RETRY)
def copy_batch(
    ctx: RunContext,
    rule: ReplicationRule,
    target: str,
    plans: list,
    replicator: core.Replicator,
    label: str = "",
) -> list:
    """Copy one batch of repositories. Item failures are recorded in the results (the task
    succeeds); only an unexpected error fails the task."""
    results = replicator.copy(plans)
    copied = sum(len(r.copied) for r in results)
    failed = sum(len(r.failed) for r in results)
    logger().info("%s [%s]: %d copied, %d failed", target, label, copied, failed)
    for r in results:
        for tag, why in r.failed[:20]:
            logger().warning("%s:%s -> %s: %s", r.source_repo, tag, target, why)
    return results


@task(name="replication-delete-batch", task_run_name="delete extraneous {target} [{label}]", **RETRY)
def delete_batch(ctx: RunContext, rule: ReplicationRule, target: str, plans: list, label: str = ""):
    """Delete one batch's extraneous target tags through the one delete path; returns its
    ``DeleteResult`` (the flow records it per tag)."""
    res = core.delete_extraneous(
        ctx.client(target), plans, max_workers=rule.concurrency, quarantine=ctx.quarantine(target)
    )
    logger().info(
        "%s [%s]: %d deleted, %d already gone, %d failed, %d repositories skipped",
        target,
        label,
        len(res.deleted),
        len(res.already_gone),
        len(res.failed),
        len(res.skipped),
    )
    for repo, why in res.skipped:
        logger().warning("%s on %s: nothing deleted: %s", repo, target, why)
    q = ctx.quarantine(target)
    if q is not None and res.held:
        logger().info(
            "%s: %d deleted manifests held in quarantine (%d bytes): undo with `%s`",
            target,
            len(res.held),
            res.held_bytes,
            undo_command(q.run, target),
        )
    if res.stopped:
        logger().error("%s: deletes stopped: %s", target, res.stopped)
    return res


@task(name="replication-verify-batch", task_run_name="verify {target} [{label}]", **RETRY)
def verify_batch(
    ctx: RunContext, rule: ReplicationRule, target: str, plans: list, results: list, label: str = ""
) -> list:
    problems = core.verify_copied(ctx.client(target), plans, results, concurrency=rule.concurrency)
    for repo, tag, why in problems:
        logger().error("%s:%s on %s: %s", repo, tag, target, why)
    return problems
