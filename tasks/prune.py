"""Tasks for gc and expire: scan a batch of repositories, read Kubernetes, delete a batch,
reclaim, verify. Thin wrappers over regkeeper.inventory / regkeeper.prune."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.inventory import scan
from regkeeper.models import Inventory
from tasks.common import RETRY, logger


@task(name="list-repositories", **RETRY)
def list_repositories(
    ctx: RunContext, registry: str, include: list[str] | None = None, exclude: list[str] | None = None
) -> list[str]:
    from regkeeper.globs import select

    repos = [r for r in ctx.client(registry).repositories() if select(r, include, exclude)]
    logger().info("%s: %d repositories", registry, len(repos))
    return repos


@task(name="scan-batch", task_run_name="scan {registry} [{label}]", **RETRY)
def scan_batch(ctx: RunContext, registry: str, repositories: list[str], label: str = "") -> Inventory:
    return scan(ctx.client(registry), repositories=repositories, storage=ctx.storage(registry))


# the reader retries each list call itself (regkeeper.retry)
@task(name="read-kubernetes", retries=0, cache_policy=NO_CACHE)
def read_kubernetes(ctx: RunContext, registry: str) -> prune.KubeState:
    st = prune.read_kubernetes(ctx, registry)
    for n in st.notes:
        logger().info("kubernetes: %s", n)
    return st


@task(name="delete-batch", task_run_name="delete {registry} [{label}]", **RETRY)
def delete_batch(
    ctx: RunContext,
    registry: str,
    items: list[tuple[str, str]],
    inv: Inventory,
    label: str = "",
    recheck: dict | None = None,
    plan=None,
):
    res = prune.delete_batch(ctx, registry, items, inv, recheck, plan=plan)
    logger().info(
        "%s [%s]: deleted %d, already gone %d, failed %d, repositories skipped %d, "
        "fallback indexes repaired %d",
        registry,
        label,
        len(res.deleted),
        len(res.already_gone),
        len(res.failed),
        len(res.skipped),
        len(res.fallback_updates),
    )
    return res


@task(name="reclaim-storage", retries=0, cache_policy=NO_CACHE)
def reclaim_storage(ctx: RunContext, registry: str, plan, deleted_any: bool) -> prune.ReclaimResult:
    res = prune.run_reclaim(ctx, registry, plan, deleted_any)
    if res.mode != "none":
        logger().info(
            "reclaim (%s): ran=%s freed=%s bytes in %.1fs%s",
            res.mode,
            res.ran,
            res.bytes_freed,
            res.seconds,
            f" error: {res.error}" if res.error else "",
        )
    return res


@task(name="verify-kept", **RETRY)
def verify_kept(
    ctx: RunContext, registry: str, inv: Inventory, plan, everything: bool, deleted=None
) -> prune.VerifyResult:
    res = prune.run_verify(ctx, registry, inv, plan, everything, deleted)
    logger().info(
        "verified %d tags, %d manifests, %d blobs: %d problems, %d kept tags moved during the run",
        res.tags_checked,
        res.manifests_checked,
        res.blobs_checked,
        len(res.problems),
        len(res.moved),
    )
    return res


@task(name="plan-quarantine-release", **RETRY)
def plan_release(ctx: RunContext, registry: str, inv: Inventory, kstate: prune.KubeState):
    rp = prune.release_plan(ctx, registry, inv, kstate)
    if rp is not None:
        logger().info(
            "quarantine: %d records hold %d bytes; %d past the window (frees %d bytes), %d in use (released back)",
            len(rp.held),
            rp.bytes_held,
            len(rp.due),
            rp.bytes_freed,
            len(rp.back),
        )
    return rp


# final deletes: never retried as a whole (every HTTP call is retried by the transport)
@task(name="release-quarantine", retries=0, cache_policy=NO_CACHE)
def release_quarantine(ctx: RunContext, registry: str, rplan):
    back, res = prune.run_release(ctx, registry, rplan)
    logger().info(
        "quarantine release: %d deleted for good, %d failed, %d released back",
        len(res.deleted),
        len(res.failed),
        len(back.restored) if back else 0,
    )
    return back, res
