"""Planning one (rule, target): diff first, so a run copies only what differs.

Per repository in the rule's scope, the source tags (after the rule's tag filters; signature
and attestation tags follow their subjects) are compared by digest with the target's tags:
tags lists on both sides, then one HEAD per tag (a GET for source tags the target lacks: the
copy needs their bytes anyway). The plan names the tags to copy (missing or different), the
tags already in sync, and, with ``deleteExtraneous``, the target tags in the rule's scope that
the source no longer has. Reads only. ``merge_plans`` joins the plans of repository batches.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from ..config import ReplicationRule
from ..errors import NotFoundError, RegistryError
from ..globs import select
from ..models import INDEX_MEDIA_TYPES, Manifest, signature_subject
from ..oci import RegistryClient
from .delete import extraneous_references
from .diff import diff_tags, extraneous_tags
from .plan_model import ReplicationPlan, RepoPlan
from .referrers import detect_modes, drop_fallback_tags, extraneous_referrers, plan_referrers
from .scope import scope_repositories, select_tags, tag_matches, target_repository

PREFETCH_MAX = 20_000  # source manifests a plan keeps in memory for the copy


@dataclass
class _Scan:
    """One planning pass: the repository plans being filled and what was read for them."""

    plans: dict[str, RepoPlan]  # source repo -> its plan
    by_target: dict[str, RepoPlan] = field(init=False)  # target repo -> the same plan
    src_tags: dict[str, list[str]] = field(default_factory=dict)  # source repo -> tags
    dst_tags: dict[str, list[str]] = field(default_factory=dict)  # target repo -> tags
    src_dig: dict[str, dict[str, str]] = field(default_factory=dict)  # source repo -> tag -> digest
    dst_dig: dict[str, dict[str, str]] = field(default_factory=dict)  # target repo -> tag -> digest
    src_types: dict[tuple[str, str], str] = field(default_factory=dict)  # (source repo, tag) -> type
    types: dict[str, str] = field(default_factory=dict)  # digest -> media type, HEADs on either side
    modes: tuple[str | None, str | None] = (None, None)  # referrers mode: (source, target)

    def __post_init__(self):
        self.by_target = {rp.target_repo: rp for rp in self.plans.values()}

    def plan_for(self, side: str, repo: str) -> RepoPlan:
        return self.plans[repo] if side == "src" else self.by_target[repo]


def plan_replication(
    src: RegistryClient,
    dst: RegistryClient,
    rule: ReplicationRule,
    target_name: str | None = None,
    *,
    concurrency: int | None = None,
    repositories: list[str] | None = None,
    removed: list[str] | None = None,
) -> ReplicationPlan:
    """Compare the source and one target of a rule, tag by tag, by digest.

    Reads only: the source catalog (unless ``repositories`` is given: then those source
    repositories, plus ``removed`` ones the source no longer has), the tags lists of both
    sides, one HEAD per source tag and one per target tag that could be in sync (all target
    tags when ``deleteExtraneous`` is on). Registry-wide failures (source catalog) raise; a
    repository whose tags cannot be read is recorded in ``RepoPlan.errors`` and, in that
    repository, nothing is copied or deleted."""
    t0 = time.perf_counter()
    workers = concurrency or rule.concurrency
    src_before, dst_before = Counter(src.stats), Counter(dst.stats)
    plan = ReplicationPlan(
        rule=rule.rule_name,
        source=src.name,
        target=target_name or dst.name,
        prefix=rule.prefix,
        delete_extraneous=rule.delete_extraneous,
    )
    if repositories is None:
        repositories, removed, errors = scope_repositories(src, dst, rule)
        plan.errors += errors
    else:
        repositories = [r for r in repositories if select(r, rule.include, rule.exclude)]
    scan = _Scan(_repo_plans(rule, repositories, removed))
    _read_tags_lists(src, dst, scan, workers)  # 1. tags lists, both sides
    _read_digests(src, dst, scan, _digest_jobs(rule, scan), workers)  # 2. digests
    scan.modes = detect_modes(src, dst, scan)
    plan.source_referrers_mode, plan.target_referrers_mode = scan.modes
    for rp in scan.plans.values():  # 3. select, diff, extraneous
        if not rp.errors:
            _decide(src, dst, rule, rp, scan)
    plan.repositories = [scan.plans[r] for r in sorted(scan.plans)]
    plan.stats = {
        "seconds": round(time.perf_counter() - t0, 3),
        "source_requests": dict(Counter(src.stats) - src_before),
        "target_requests": dict(Counter(dst.stats) - dst_before),
    }
    return plan


def _repo_plans(
    rule: ReplicationRule, repositories: list[str], removed: list[str] | None
) -> dict[str, RepoPlan]:
    """One empty plan per source repository in scope, plus (with deleteExtraneous) one per
    repository gone from the source, whose target tags can only be extraneous."""
    prefix = (rule.prefix or "").strip("/")
    repo_plans = {r: RepoPlan(r, target_repository(prefix, r)) for r in repositories}
    if rule.delete_extraneous:
        for r in removed or []:
            repo_plans.setdefault(r, RepoPlan(r, target_repository(prefix, r), source_missing=True))
    return repo_plans


def _list_tags(client: RegistryClient, repo: str) -> list[str]:
    try:
        return client.list_tags(repo)
    except NotFoundError:
        return []


def _read_tags_lists(src: RegistryClient, dst: RegistryClient, scan: _Scan, workers: int) -> None:
    """Step 1: the tags lists of both sides (a repository whose list fails gets an error and
    is left alone)."""
    jobs = [("src", r) for r, rp in scan.plans.items() if not rp.source_missing]
    jobs += [("dst", rp.target_repo) for rp in scan.plans.values()]

    def list_job(job):
        side, repo = job
        return _list_tags(src if side == "src" else dst, repo)

    for (side, repo), tags, err in dst.map(list_job, jobs, workers):
        rp = scan.plan_for(side, repo)
        if err is not None:
            rp.errors.append(f"{'source' if side == 'src' else 'target'} tags unreadable: {err}")
        elif tags is not None:
            (scan.src_tags if side == "src" else scan.dst_tags)[repo] = tags


def _digest_jobs(rule: ReplicationRule, scan: _Scan) -> list[tuple[str, str, str]]:
    """Step 2's reads, (side, repository, tag): HEAD every source tag the target also lists,
    GET the ones it lacks (their bytes are needed to copy them; at most ``PREFETCH_MAX`` held
    in memory, HEAD beyond), HEAD target tags that may be in sync (all of them with deletes)."""
    heads = []
    budget = PREFETCH_MAX  # manifests held in memory between plan and copy
    for r, rp in scan.plans.items():
        if rp.errors:
            continue
        stags = scan.src_tags.get(r, []) if not rp.source_missing else []
        # a tag the filter excludes needs no digest; signature tags follow their subjects, so
        # they are resolved whatever the filter says
        stags = [t for t in stags if signature_subject(t) or tag_matches(t, rule.tags)]
        dtags = scan.dst_tags.get(rp.target_repo, [])
        dset = set(dtags)
        heads += [("src" if t in dset or budget <= 0 else "src-get", r, t) for t in stags]
        budget -= sum(1 for t in stags if t not in dset)
        if rule.delete_extraneous:
            heads += [("dst", rp.target_repo, t) for t in dtags]
        else:
            # only tags that exist on both sides and could pass the filters need a HEAD
            sset = set(stags)
            heads += [("dst", rp.target_repo, t) for t in dtags if t in sset]
    return heads


def _read_digests(
    src: RegistryClient, dst: RegistryClient, scan: _Scan, heads: list[tuple[str, str, str]], workers: int
) -> None:
    """Step 2: a digest (and media type) per tag. A source tag that cannot be read is
    unresolved (a failed item, the others go on); a target tag that cannot be read is copied
    again if selected (idempotent) and turns deletes off in its repository."""
    src_head, dst_head = src.head_manifest, dst.head_manifest

    def head_job(job):
        side, repo, tag = job
        if side == "src-get":
            try:
                return src.get_manifest(repo, tag)
            except NotFoundError:
                return None
        return (src_head if side == "src" else dst_head)(repo, tag)

    for (side, repo, tag), h, err in dst.map(head_job, heads, workers):
        if side == "src-get":
            side = "src"
            if isinstance(h, Manifest):
                scan.plans[repo].prefetched[h.digest] = h
        rp = scan.plan_for(side, repo)
        if err is not None:
            if side == "src":  # this tag cannot be compared: a failed item, the others go on
                rp.unresolved.append((tag, f"source digest unreadable: {err}"))
            else:  # unknown on the target: copy it again (idempotent), no deletes
                rp.no_deletes = f"target tag {tag} unreadable ({err}): no deletes in this repository"
            continue
        if h is None:  # deleted between the list and the HEAD
            continue
        (scan.src_dig if side == "src" else scan.dst_dig).setdefault(repo, {})[tag] = h.digest
        if h.media_type:
            scan.types[h.digest] = h.media_type
        if side == "src":
            scan.src_types[(repo, tag)] = h.media_type


def _children_lookup(types: dict[str, str], repos: list[tuple[RegistryClient, str]], strict: bool):
    """``children_of(digest)``: the manifests an index references (by digest, so the disk cache
    answers), asked of each (client, repository) in turn; [] for a non-index. ``strict``: a read
    failure other than 404 raises (deletes must not guess), else it counts as no children."""

    def f(digest):
        mt = types.get(digest)
        if mt and mt not in INDEX_MEDIA_TYPES:
            return []
        last = None
        for client, repo in repos:
            try:
                m = client.get_manifest(repo, digest)  # by digest: the disk cache answers
            except NotFoundError as e:
                last = e
                continue
            except (RegistryError, ValueError) as e:
                if strict:
                    raise
                last = e
                continue
            return m.referenced_manifests() if m.kind == "index" else []
        if strict and last is not None and not isinstance(last, NotFoundError):
            raise last
        return []

    return f


def _decide(
    src: RegistryClient, dst: RegistryClient, rule: ReplicationRule, rp: RepoPlan, scan: _Scan
) -> None:
    """Step 3, one repository: select the source tags, diff them with the target, and (with
    deleteExtraneous, when every digest was readable) find the extraneous target tags."""
    r = rp.source_repo
    stags = scan.src_dig.get(r, {})
    selected = select_tags(stags, rule.tags, _children_lookup(scan.types, [(src, r)], False)) if stags else {}
    selected = drop_fallback_tags(selected, *scan.modes)
    dtags = scan.dst_dig.get(rp.target_repo, {})
    rp.to_copy, rp.in_sync = diff_tags(selected, dtags)
    for c in rp.to_copy:
        c.media_type = scan.src_types.get((r, c.tag), "")
    rp.unresolved.sort()
    if rule.delete_extraneous and rp.unresolved and not rp.no_deletes:
        rp.no_deletes = f"{len(rp.unresolved)} source tag(s) unreadable: no deletes in this repository"
    if rule.delete_extraneous and dtags and not rp.no_deletes:
        lookups = [(dst, rp.target_repo)] + ([] if rp.source_missing else [(src, r)])
        try:
            rp.extraneous, rp.kept_extraneous, rp.scope_tags = extraneous_tags(
                dtags, selected, rule.tags, _children_lookup(scan.types, lookups, True)
            )
        except RegistryError as e:
            rp.errors.append(f"an index on the target is unreadable, so no deletes in this repository: {e}")
            rp.extraneous, rp.kept_extraneous = [], []
    listed = scan.dst_tags.get(rp.target_repo, [])
    plan_referrers(src, dst, rp, selected, listed, scan.modes, rule.concurrency)
    if rp.extraneous:  # what each deleted manifest references: the delete order
        try:
            subjects: dict[str, str] = {}
            rp.references = extraneous_references(
                dst, rp.target_repo, rp.extraneous, scan.types, rule.concurrency, subjects
            )
            if scan.modes[1] == "tag-schema":
                rp.fallback_subjects = subjects
            rp.extraneous_referrers = extraneous_referrers(dst, rp, listed, scan.modes[1], rule.concurrency)
        except (RegistryError, ValueError) as e:
            rp.no_deletes = (
                f"a target manifest planned for deletion is unreadable ({e}), so the "
                "delete order is unknown: no deletes in this repository"
            )
            rp.extraneous, rp.extraneous_referrers = [], []


def merge_plans(
    rule: ReplicationRule,
    source: str,
    target: str,
    parts: list[ReplicationPlan],
    errors: list[str] | None = None,
) -> ReplicationPlan:
    """One plan from the plans of several repository batches."""
    plan = ReplicationPlan(
        rule=rule.rule_name,
        source=source,
        target=target,
        prefix=rule.prefix,
        delete_extraneous=rule.delete_extraneous,
        errors=list(errors or []),
    )
    stats: Counter = Counter()
    for p in parts:
        plan.source_referrers_mode = plan.source_referrers_mode or p.source_referrers_mode
        plan.target_referrers_mode = plan.target_referrers_mode or p.target_referrers_mode
        plan.repositories += p.repositories
        plan.errors += p.errors
        stats["seconds"] += p.stats.get("seconds", 0)
        for side in ("source_requests", "target_requests"):
            for k, v in (p.stats.get(side) or {}).items():
                stats[f"{side}.{k}"] += v
    plan.repositories.sort(key=lambda r: r.source_repo)
    plan.stats = dict(stats)
    return plan
