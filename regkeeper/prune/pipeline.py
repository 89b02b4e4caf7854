"""gc and expire share one pipeline: inventory -> Kubernetes in-use -> plan -> cap -> delete ->
reclaim -> verify -> report. This module holds the steps (Prefect-free); flows compose them.
The cap check is ``policy.cap.check_plan_cap`` (re-exported by the package as ``check_cap``),
the report ``report.build_report``.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import kube
from ..config import Config, GCConfig
from ..context import RunContext
from ..errors import ConfigError, RefusedError
from ..models import Inventory
from ..policy import Plan, Resolver, gc_resolver, tier_resolver
from ..policy import plan as make_plan
from ..pulls.lookup import history_for
from ..util import utcnow
from .delete import DeleteResult, delete_manifests
from .reclaim import ReclaimResult, reclaim
from .referrers import repair_fallback_indexes
from .verify import VerifyResult, verify_kept


@dataclass
class KubeState:
    usage: kube.RegistryUsage | None  # None: no protection
    notes: list[str] = field(default_factory=list)
    scan: kube.InUseScan | None = None


def read_kubernetes(ctx: RunContext, registry: str) -> KubeState:
    """In-use images for this registry. Without a ``kubernetes`` section there is no protection
    (and the report says so). When a context cannot be read and ``failClosed`` is on, raise
    RefusedError naming the context and why: nothing will be deleted."""
    kc = ctx.config.kubernetes
    if kc is None:
        return KubeState(
            None, ["no kubernetes section in the config: images in use by workloads are NOT protected"]
        )
    scan = kube.scan_from_config(kc)  # a live cluster, or a recorded snapshot; never raises
    notes = [scan.summary()]
    if scan.errors:
        if kc.fail_closed:
            scan.raise_if_incomplete()
        notes.append(
            scan.failure_message() + " (failClosed is off: continuing WITHOUT protection from those contexts)"
        )
    hosts = ctx.config.registry_hosts(registry)
    usage = scan.for_registry(hosts)
    n = len(usage)
    notes.append(
        f"{n} reference{'' if n == 1 else 's'} point{'s' if n == 1 else ''} at this registry ({', '.join(sorted(hosts))})"
    )
    return KubeState(usage, notes, scan)


def gc_plan(
    ctx: RunContext,
    registry: str,
    inv: Inventory,
    kstate: KubeState,
    *,
    days: int | None = None,
    keep_last: int | None = None,
    now: datetime | None = None,
) -> Plan:
    resolve, frac, grace = job_rules(ctx.config, "gc", days=days, keep_last=keep_last)
    return _plan(ctx, "gc", registry, inv, kstate, resolve, now, frac, grace)


def expire_plan(
    ctx: RunContext, registry: str, inv: Inventory, kstate: KubeState, *, now: datetime | None = None
) -> Plan:
    resolve, frac, grace = job_rules(ctx.config, "expire")
    return _plan(ctx, "expire", registry, inv, kstate, resolve, now, frac, grace)


def job_rules(
    config: Config, job: str, *, days: int | None = None, keep_last: int | None = None
) -> tuple[Resolver, float, timedelta]:
    """A job's rules from the config: (resolver, maxDeleteFraction, untaggedGrace). gc: the
    ``gc`` section (``days`` / ``keep_last`` override it); expire: the tiers. The backtest reads
    the same."""
    if job == "gc":
        g = config.gc or GCConfig()
        if g.rules and (days is not None or keep_last is not None):
            raise ConfigError(
                "gc.rules: the run's days / keep_last parameters do not apply to ordered rules "
                "(change the rules' olderThan / keep.last in the config)"
            )
        resolve = gc_resolver(
            g.include,
            g.exclude,
            g.days if days is None else days,
            g.keep_last if keep_last is None else keep_last,
            g.protect,
            delete_untagged=g.delete_untagged,
            pulled_within=g.pulled_within,
            rules=g.rules or (),
        )
        return resolve, g.max_delete_fraction, g.untagged_grace
    e = config.expire
    resolve = tier_resolver(config.tiers, default=e.default_tier if e else None)
    return resolve, e.max_delete_fraction if e else 0.5, e.untagged_grace if e else timedelta(hours=1)


def _plan(ctx, job, registry, inv, kstate, resolve, now, max_delete_fraction, untagged_grace) -> Plan:
    """The plan of gc or expire: the rule resolver, the pull history (pulledWithin) read once."""
    now = now or utcnow()
    pulls, notes = history_for(ctx.config, job, registry, now)
    kstate.notes.extend(notes)
    return make_plan(
        inv,
        resolve,
        in_use=kstate.usage,
        now=now,
        max_delete_fraction=max_delete_fraction,
        untagged_grace=untagged_grace,
        pulls=pulls,
    )


def planned_tag_deletes(plan: Plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in plan.deleted_tags():
        out.setdefault(t.repository, set()).add(t.tag)
    return out


def delete_batch(
    ctx: RunContext,
    registry: str,
    items: list[tuple[str, str]],
    inv: Inventory | None,
    recheck: dict[str, set[str]] | None = None,
    plan: Plan | None = None,
    repos: list[str] | None = None,
) -> DeleteResult:
    """Delete a batch; with ``recheck`` (repo -> tags the plan deletes) every repository's tags
    are re-read first and a repository changed since the scan is left alone. With ``plan``,
    the kept fallback indexes of the batch's repositories are repaired after (no entry for a
    deleted or missing referrer remains: prune/referrers.py)."""
    client = ctx.client(registry)
    quarantine = ctx.quarantine(registry)
    if quarantine is not None and plan is not None:
        quarantine.explain(delete_reasons(plan))
    res = delete_manifests(client, items, inventory=inv, recheck=recheck, quarantine=quarantine)
    if plan is not None and inv is not None and not res.stopped:
        skipped = {repo for repo, _ in res.skipped}
        touched = (set(repos or ()) | set(recheck or ()) | {repo for repo, _ in items}) - skipped
        repair_fallback_indexes(client, inv, plan, res, touched)
    return res


def delete_reasons(plan: Plan) -> dict[tuple[str, str], tuple[str, str]]:
    """(repo, digest) -> (rule, why) of every planned delete: the reasons of its deleted tags,
    else the manifest's own (a child, a referrer, untagged)."""
    tag_reasons: dict[tuple[str, str], list[str]] = {}
    for t in plan.deleted_tags():
        tag_reasons.setdefault((t.repository, t.digest), []).append(t.reason)
    return {
        (m.repository, m.digest): (
            plan.policies.get(m.repository, ""),
            "; ".join(dict.fromkeys(tag_reasons.get((m.repository, m.digest), [m.reason]))),
        )
        for m in plan.deleted_manifests()
    }


def release_plan(
    ctx: RunContext, registry: str, inv: Inventory, kstate: KubeState, now: datetime | None = None
):
    """What the quarantine holds and which entries the window has passed (``quarantine.release``),
    or None without a ``quarantine`` section. With the window at 0, all of it is due."""
    qc = ctx.config.quarantine
    if qc is None:
        return None
    from ..quarantine.release import plan_release

    return plan_release(ctx.client(registry), qc, now or utcnow(), inventory=inv, in_use=kstate.usage)


def run_release(ctx: RunContext, registry: str, rplan) -> tuple:
    """Release the due entries: in-use ones back to their repositories, the others deleted for
    good through the one delete path. (undo result or None, DeleteResult)."""
    from ..quarantine.release import execute_release

    qc = ctx.config.quarantine
    if qc is None or rplan is None or not rplan.due:
        return None, DeleteResult()
    return execute_release(ctx.client(registry), qc, rplan)


def run_reclaim(ctx: RunContext, registry: str, plan: Plan, deleted_any: bool) -> ReclaimResult:
    rc = ctx.config.registry(registry)
    if not deleted_any and not plan.repositories_to_remove:
        return ReclaimResult(mode=rc.reclaim.mode)
    return reclaim(
        rc.reclaim,
        ctx.storage(registry),
        remove_repositories=plan.repositories_to_remove,
        client=ctx.client(registry),
        kube_cfg=ctx.config.kubernetes,
        registry=registry,
        state=ctx.run_state(),
    )


def run_verify(
    ctx: RunContext,
    registry: str,
    inv: Inventory,
    plan: Plan,
    everything: bool,
    deleted: DeleteResult | None = None,
) -> VerifyResult:
    """Kept tags resolve and their images are whole. After a garbage-collect (global) every
    repository is checked; after manifest deletes only, the repositories the run touched. A kept
    tag a user moved during the run is information (its new image must be whole); one moved to a
    manifest this run deleted (``deleted``) is a problem."""
    touched = {t.repository for t in plan.deleted_tags()} | {m.repository for m in plan.deleted_manifests()}
    kept = [
        (t.repository, t.tag, t.digest) for t in plan.kept_tags() if everything or t.repository in touched
    ]
    gone = set(deleted.deleted) if deleted is not None else set()
    return verify_kept(ctx.client(registry), inv, kept, deleted=gone)


def refuse(reason: str) -> RefusedError:
    return RefusedError(reason)
