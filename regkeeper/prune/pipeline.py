"""gc and expire share one pipeline: inventory -> Kubernetes in-use -> plan -> cap -> delete ->
reclaim -> verify -> report. This module holds the steps (Prefect-free); flows compose them.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import kube
from ..context import RunContext
from .delete import (DeleteResult, ReclaimResult, VerifyResult, delete_manifests, reclaim,
                     verify_kept)
from ..errors import RefusedError
from ..models import Inventory
from ..policy import Plan, gc_resolver, plan as make_plan, tier_resolver
from ..report import Report
from ..util import human_bytes, utcnow

log = logging.getLogger(__name__)


@dataclass
class KubeState:
    usage: object | None              # kube.RegistryUsage or None (no protection)
    notes: list[str] = field(default_factory=list)
    scan: object | None = None        # kube.InUseScan


def read_kubernetes(ctx: RunContext, registry: str) -> KubeState:
    """In-use images for this registry. Without a ``kubernetes`` section there is no protection
    (and the report says so). When a context cannot be read and ``failClosed`` is on, raise
    RefusedError naming the context and why: nothing will be deleted."""
    kc = ctx.config.kubernetes
    if kc is None:
        return KubeState(None, ["no kubernetes section in the config: images in use by workloads "
                                "are NOT protected"])
    scan = kube.scan_from_config(kc)   # a live cluster, or a recorded snapshot; never raises
    notes = [scan.summary()]
    if scan.errors:
        if kc.fail_closed:
            scan.raise_if_incomplete()
        notes.append(scan.failure_message() + " (failClosed is off: continuing WITHOUT protection "
                                               "from those contexts)")
    hosts = ctx.config.registry_hosts(registry)
    usage = scan.for_registry(hosts)
    notes.append(f"{len(usage)} references point at this registry ({', '.join(sorted(hosts))})")
    return KubeState(usage, notes, scan)


def gc_plan(ctx: RunContext, registry: str, inv: Inventory, kstate: KubeState, *,
            days: int | None = None, keep_last: int | None = None,
            now: datetime | None = None) -> Plan:
    g = ctx.config.gc
    if g is None:
        from ..config import GCConfig
        g = GCConfig()
    resolve = gc_resolver(g.include, g.exclude, g.days if days is None else days,
                          g.keep_last if keep_last is None else keep_last, g.protect,
                          delete_untagged=g.delete_untagged)
    return make_plan(inv, resolve, in_use=kstate.usage, now=now or utcnow(),
                     max_delete_fraction=g.max_delete_fraction, untagged_grace=g.untagged_grace)


def expire_plan(ctx: RunContext, registry: str, inv: Inventory, kstate: KubeState, *,
                now: datetime | None = None) -> Plan:
    e = ctx.config.expire
    resolve = tier_resolver(ctx.config.tiers, default=e.default_tier if e else None)
    frac = e.max_delete_fraction if e else 0.5
    grace = e.untagged_grace if e else timedelta(hours=1)
    return make_plan(inv, resolve, in_use=kstate.usage, now=now or utcnow(), max_delete_fraction=frac,
                     untagged_grace=grace)


def check_cap(plan: Plan, force: bool) -> str | None:
    """None when the run may proceed; else the refusal reason."""
    if plan.cap_ok:
        return None
    tripped = "; ".join(str(c) for c in plan.cap_tripped)
    if force:
        log.warning("blast-radius cap tripped (%s) and overridden by force", tripped)
        return None
    return (f"blast-radius cap: the plan deletes more than {plan.max_delete_fraction:.0%} of the tags "
            f"of {tripped}; nothing was deleted. Re-run with force to override.")


def planned_tag_deletes(plan: Plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in plan.deleted_tags():
        out.setdefault(t.repository, set()).add(t.tag)
    return out


def delete_batch(ctx: RunContext, registry: str, items: list[tuple[str, str]],
                 inv: Inventory | None, recheck: dict[str, set[str]] | None = None) -> DeleteResult:
    """Delete a batch; with ``recheck`` (repo -> tags the plan deletes) every repository's tags
    are re-read first and a repository changed since the scan is left alone."""
    return delete_manifests(ctx.client(registry), items, inventory=inv, recheck=recheck)


def run_reclaim(ctx: RunContext, registry: str, plan: Plan, deleted_any: bool) -> ReclaimResult:
    rc = ctx.config.registry(registry)
    if not deleted_any and not plan.repositories_to_remove:
        return ReclaimResult(mode=rc.reclaim.mode)
    return reclaim(rc.reclaim, ctx.storage(registry), remove_repositories=plan.repositories_to_remove,
                   client=ctx.client(registry), kube_cfg=ctx.config.kubernetes)


def run_verify(ctx: RunContext, registry: str, inv: Inventory, plan: Plan,
               everything: bool) -> VerifyResult:
    """Kept tags resolve and their blobs answer 200. After a garbage-collect (global) every
    repository is checked; after manifest deletes only, the repositories the run touched."""
    touched = {t.repository for t in plan.deleted_tags()} | {m.repository for m in plan.deleted_manifests()}
    kept = [(t.repository, t.tag, t.digest) for t in plan.kept_tags()
            if everything or t.repository in touched]
    return verify_kept(ctx.client(registry), inv, kept)


def build_report(flow: str, registry: str, plan: Plan | None, *, inv: Inventory | None = None,
                 kstate: KubeState | None = None, deleted: DeleteResult | None = None,
                 reclaimed: ReclaimResult | None = None, verified: VerifyResult | None = None,
                 dry_run: bool = False, refused: str | None = None, error: str | None = None,
                 started: datetime | None = None) -> Report:
    rep = Report(flow=flow, registry=registry, title=f"regkeeper {flow}")
    if started:
        rep.started = started
    if kstate is not None:
        for n in kstate.notes:
            rep.note(n)
    if plan is not None:
        s = plan.summary()
        rep.summary.update({
            "tags scanned": s["tags_total"], "tags kept": s["tags_kept"],
            "tags to delete" if dry_run or refused else "tags deleted": s["tags_deleted"],
            "in use (kept)": s["tags_in_use"],
            "expired but in use": s["expired_in_use"],
            "manifests to delete" if dry_run or refused else "manifests deleted": s["manifests_deleted"],
            "bytes freed (preview)": s["bytes_freed"],
            "repositories to remove": len(s["repositories_to_remove"]),
            "push time source": _push_source_label(s["push_time_source"]),
            "kubernetes protection": s["kube_protection"],
        })
        if plan.cap_tripped:
            rep.summary["cap tripped"] = [str(c) for c in plan.cap_tripped]
        if plan.cap_exempt:
            rep.note("per-repository cap not applied (ttl tier / repository removed whole; the "
                     "registry-wide cap still applies): " + ", ".join(str(c) for c in plan.cap_exempt))
        rep.add_table("decisions", plan.tag_rows(), Plan.TAG_COLUMNS)
        rep.add_table("repositories", plan.repository_rows())
        rep.add_table("manifests", plan.manifest_rows())
        for t in plan.expired_in_use():
            if len(rep.notes) < 200:
                rep.note(f"expired but in use: {t.repository}:{t.tag} ({'; '.join(t.in_use)})")
        if not plan.untagged_known:
            rep.note("untagged manifests are invisible without storage access (configure storage "
                     "for exact previews and untagged cleanup)")
    if inv is not None:
        errs = [(repo, e) for repo, r in inv.repositories.items() for e in r.errors]
        for repo, e in errs[:50]:
            rep.note(f"scan: {repo}: {e}")
        rep.summary["scan seconds"] = inv.stats.get("seconds")
    if deleted is not None:
        rep.summary["deletes ok"] = len(deleted.deleted)
        rep.summary["already gone"] = len(deleted.already_gone)
        rep.summary["deletes failed"] = len(deleted.failed)
        if deleted.skipped:
            rep.summary["repositories changed since the scan (skipped)"] = len(deleted.skipped)
        for repo, why in deleted.skipped[:100]:
            rep.note(f"skipped {repo}: {why}")
        for repo, dg, why in deleted.failed[:100]:
            rep.note(f"delete failed: {repo}@{dg}: {why}")
    if reclaimed is not None and reclaimed.mode != "none":
        rep.summary["reclaim"] = reclaimed.mode + (" (ran)" if reclaimed.ran else " (not run)")
        if reclaimed.bytes_freed is not None:
            rep.summary["bytes freed (measured)"] = reclaimed.bytes_freed
        if reclaimed.repositories_removed:
            rep.summary["repositories removed"] = reclaimed.repositories_removed
        if reclaimed.error:
            rep.note(f"reclaim: {reclaimed.error}")
    elif reclaimed is not None and plan is not None and plan.bytes_freed:
        rep.note(f"{human_bytes(plan.bytes_freed)} become reclaimable when the registry's "
                 "garbage-collect runs (reclaim mode: none)")
    if plan is not None and plan.repositories_to_remove and reclaimed is not None and not dry_run:
        left = [r for r in plan.repositories_to_remove if r not in (reclaimed.repositories_removed or [])]
        if left:
            rep.note("empty repositories left behind (no storage access or reclaim not run): "
                     + ", ".join(left))
    if verified is not None:
        rep.summary["verified tags"] = verified.tags_checked
        rep.summary["verified blobs"] = verified.blobs_checked
        rep.summary["verify problems"] = len(verified.problems)
        for repo, tag, p in verified.problems[:100]:
            rep.note(f"verify: {repo}:{tag} {p}")
    status = "ok"
    if dry_run:
        status = "dry-run"
    if refused:
        status = "refused"
        rep.note(refused)
    if error:
        status = "failed"
        rep.note(error)
    if deleted is not None and (deleted.failed or deleted.stopped):
        status = "failed"
    if verified is not None and verified.problems:
        status = "failed"
    if reclaimed is not None and reclaimed.error and reclaimed.mode != "none":
        status = "failed"
    rep.finish(status)
    return rep


_PUSH_SOURCES = {
    "filesystem": "storage: filesystem (tag link mtime; image config created where absent)",
    "s3": "storage: s3 (tag link LastModified; image config created where absent)",
}


def _push_source_label(src: str | None) -> str:
    """What ages are measured from, in words (the per-tag ``age_source`` column is exact)."""
    return _PUSH_SOURCES.get(src or "none", f"storage: {src}" if src and src != "none"
                             else "image config created (no storage access)")


def refuse(reason: str) -> RefusedError:
    return RefusedError(reason)
