"""The planner: ``plan(inventory, resolve, in_use=..., now=...)`` turns an
:class:`~regkeeper.models.Inventory` and per-repository rules into a :class:`Plan`.

Per repository (:class:`_RepoPlanner`), in named steps: the rules' verdict on every tag
(``rules``) -> seed the kept set (kept tags, forever / no-policy repositories, untagged
manifests kept by ``deleteUntagged`` off or by the grace period) -> spread protection through
the reference graph and ask Kubernetes (``graph``) -> one decision per tag and per manifest,
each naming the rule and the reason (``decisions``) -> the safe delete order and whether the
repository goes whole. Then for the registry: the exact bytes freed (``freed``) and the blast-radius cap
(``cap``). No I/O, no clock (``now`` is given), no Prefect.

Cost is linear in tags + manifests + blob references: each digest is visited once by the
fixpoint and asked about in Kubernetes at most once.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ..config import format_duration
from ..models import Inventory, ManifestInfo, RepoInventory
from .cap import RepoCount, tally
from .decisions import DELETE, KEEP, ManifestDecision, Plan, TagDecision
from .freed import RepoResult, collect
from .graph import InUse, InUseProtection, KeptSet, RepoGraph, is_real, short
from .ordered import RepoRules, rank_images
from .pulled import PullHistory, PullKeep
from .rules import (
    FOLLOW,
    NO_POLICY,
    RepoPolicy,
    Resolver,
    orphan_reason,
    ranks_images,
    removes_repository,
    tag_time,
    tag_verdict,
)


class _RepoPlanner:
    def __init__(
        self,
        r: RepoInventory,
        pol: RepoPolicy | None,
        in_use: InUse | None,
        now: datetime,
        push_src: str,
        untagged_known: bool,
        untagged_grace: timedelta = timedelta(0),
        pulls: PullKeep | None = None,
    ):
        self.untagged_grace = untagged_grace
        self.pulls = pulls
        self.r = r
        self.pol = pol
        self.in_use = in_use
        self.now = now
        self.push_label = f"push:{push_src}" if push_src and push_src != "none" else "push"
        self.untagged_known = untagged_known
        self.rule = pol.name if pol else NO_POLICY
        self.graph = RepoGraph(r)
        self.present = self.graph.present
        self.by_digest = self.graph.by_digest
        self.subject_of = self.graph.subject_of  # tag -> (subject, kind)
        self.closure = KeptSet(self.graph)
        self.kept = self.closure.kept  # digest -> (reason, via tag)
        self.verdict: dict[str, tuple[str, str]] = {}  # tag -> (keep|delete|follow, reason)
        self.ages: dict[str, tuple[float | None, str | None]] = {}
        self.tag_in_use: dict[str, tuple[str, ...]] = {}
        self.dig_in_use: dict[str, tuple[str, ...]] = {}
        self.ordered = RepoRules(pol.rules if pol else (), r, self.rule, now, pulls)  # which rule decided

    def keep(self, digest: str, reason: str, tag: str | None = None) -> None:
        self.closure.keep(digest, reason, tag)

    def run(self) -> RepoResult:
        self.rule_verdicts()
        self.seed()
        self.closure.drain()
        self.protect_in_use()
        r = self.r
        tag_decisions = [self._tag_decision(t) for t in sorted(r.tags)]
        deleted = {d for d in self.present if d not in self.kept}
        manifest_decisions = self._manifest_decisions(deleted)
        remove = removes_repository(
            self.pol,
            bool(r.tags) and all(td.action == DELETE for td in tag_decisions),
            len(deleted) == len(self.present) and len(self.present) == len(r.manifests) and not r.errors,
        )
        return RepoResult(
            tag_decisions,
            manifest_decisions,
            deleted,
            self.present - deleted,
            self.graph.delete_order(deleted),
            remove,
        )

    # ---------------------------------------------------------------- rules

    def rule_verdicts(self) -> None:
        """Every tag's age, and the rule's verdict on it."""
        pol, r = self.pol, self.r
        times, newest = self._tag_times()
        rank = rank_images(newest) if ranks_images(pol) else {}
        ordered = self.ordered.tag_verdicts(times, self.subject_of)
        for t, d in r.tags.items():
            when = times[t]
            sub = self.subject_of.get(t)
            v = tag_verdict(
                pol,
                t,
                None if when is None else self.now - when,
                rank.get(d),
                sub,
                sub is not None and sub[0] in self.present,
                self.untagged_known,
                ordered.get(t),
            )
            if self.pulls is not None and pol is not None and sub is None:
                v = self.pulls.verdict(pol.pulled_within, r.name, d, v)
            self.verdict[t] = v

    def _tag_times(self) -> tuple[dict[str, datetime | None], dict[str, datetime]]:
        """(tag -> time, digest -> newest tag time for ranking); records ``self.ages``."""
        times: dict[str, datetime | None] = {}
        newest: dict[str, datetime] = {}
        for t, d in self.r.tags.items():
            when, src = tag_time(self.r, t, d, self.push_label)
            times[t] = when
            self.ages[t] = ((self.now - when) / timedelta(days=1) if when else None, src)
            if when is not None and t not in self.subject_of:
                if d not in newest or when > newest[d]:
                    newest[d] = when
        return times, newest

    # ---------------------------------------------------------------- fixpoint

    def seed(self) -> None:
        """What is kept before the graph has its say."""
        pol, r = self.pol, self.r
        for t, (action, reason) in self.verdict.items():
            if action == KEEP:
                self.keep(r.tags[t], reason, t)
            elif r.tags[t] not in self.present:
                # the scan could not read this manifest: nothing to delete it by, so keep it
                self.verdict[t] = (KEEP, "manifest not in inventory")
                self.keep(r.tags[t], "manifest not in inventory", t)
        if pol is None or pol.keep_forever:
            why = "keep forever" if pol else "no policy for this repository"
            for d in sorted(self.present):
                self.keep(d, why)
        elif pol.rules:
            for d, why in self.ordered.untagged_kept(self.present, self.graph.parents()).items():
                self.keep(d, why)
        elif not pol.delete_untagged:
            for d in r.untagged:
                m = r.manifests.get(d)
                if is_real(m) and not (m.subject and m.subject in self.present):
                    self.keep(d, "untagged (deleteUntagged off)")
        if pol is not None and not pol.keep_forever and self.untagged_grace > timedelta(0):
            self._seed_grace()
        if pol is not None and not pol.keep_forever and self.pulls is not None:
            self._seed_pulled(pol)

    def _seed_pulled(self, pol: RepoPolicy) -> None:
        """pulledWithin: an untagged manifest pulled by digest within the window is kept (and
        every untagged one when the pull history does not cover the window)."""
        r = self.r
        for d in r.untagged:
            m = r.manifests.get(d)
            if is_real(m) and not (m.subject and m.subject in self.present):
                why = self.pulls.untagged(pol.pulled_within, r.name, d)  # type: ignore[union-attr]
                if why:
                    self.keep(d, why)

    def _seed_grace(self) -> None:
        """A multi-arch push uploads its children before the index, and a tag is written after
        its manifest: a recent untagged manifest may be a push in progress."""
        r = self.r
        for d in r.untagged:
            pushed = r.untagged_pushed.get(d)
            m = r.manifests.get(d)
            if m is not None and m.subject and m.subject in self.present:
                continue  # a referrer follows its subject; only an orphan may be a push in progress
            if pushed is not None and is_real(m) and self.now - pushed < self.untagged_grace:
                self.keep(
                    d,
                    f"untagged, pushed {format_duration(self.now - pushed)} ago (within the "
                    f"{format_duration(self.untagged_grace)} grace period: a push may be in "
                    "progress)",
                )

    def protect_in_use(self) -> None:
        """Kubernetes protection (see ``graph.InUseProtection``)."""
        if self.in_use is None or self.pol is None or self.pol.keep_forever:
            return
        prot = InUseProtection(self.closure, self.in_use)
        prot.run()
        self.tag_in_use, self.dig_in_use = prot.tags, prot.digests

    # ---------------------------------------------------------------- decisions

    def _tag_decision(self, t: str) -> TagDecision:
        r = self.r
        d = r.tags[t]
        action, rule_reason = self.verdict[t]
        age_days, age_src = self.ages[t]
        sub = self.subject_of.get(t)
        if d not in self.kept:
            reason = f"{sub[1]} of deleted {short(sub[0])}" if sub and action == FOLLOW else rule_reason
            rule = self.ordered.rule(t)
            return TagDecision(r.name, t, d, DELETE, reason, rule, _round(age_days), age_src)
        reason, in_use = self._keep_reason(t, d, action, rule_reason, sub)
        overridden = rule_reason if action == DELETE else None
        rule = self.ordered.rule(t)
        return TagDecision(r.name, t, d, KEEP, reason, rule, _round(age_days), age_src, 0, in_use, overridden)

    def _keep_reason(
        self, t: str, d: str, action: str, rule_reason: str, sub: tuple[str, str] | None
    ) -> tuple[str, tuple[str, ...]]:
        """Why a kept tag is kept, and the Kubernetes sources when that is being in use."""
        kreason, ktag = self.kept[d]
        if t in self.tag_in_use:
            return "in use", self.tag_in_use[t]
        if action == KEEP:
            return rule_reason, ()
        if sub and sub[0] in self.kept:
            return f"{sub[1]} of kept {short(sub[0])}", ()
        if ktag is not None and ktag != t:
            return f"shares digest with kept tag {ktag}", self.tag_in_use.get(ktag, ())
        if d in self.dig_in_use:
            return "in use", self.dig_in_use[d]
        return f"digest kept: {kreason}", ()

    def _manifest_decisions(self, deleted: set[str]) -> list[ManifestDecision]:
        r = self.r
        untagged = set(r.untagged)
        parents = self.graph.parents()
        out: list[ManifestDecision] = []
        for d in sorted(self.present):
            m = r.manifests[d]
            tags = tuple(sorted(self.by_digest.get(d, ())))
            if d in self.kept:
                kreason, ktag = self.kept[d]
                src = self.dig_in_use.get(d) or (self.tag_in_use.get(ktag, ()) if ktag else ())
                reason = f"tag {ktag}: {kreason}" if ktag else kreason
                rule = self.ordered.rule(ktag or d)
                out.append(ManifestDecision(r.name, d, KEEP, reason, tags, m.kind, 0, src, rule))
                continue
            dead_parents = sorted(p for p in parents.get(d, ()) if p in deleted)
            reason = self._delete_reason(d, m, tags, dead_parents, untagged)
            rule = self.ordered.rule(tags[0] if tags else d)
            out.append(ManifestDecision(r.name, d, DELETE, reason, tags, m.kind, rule=rule))
        return out

    def _delete_reason(
        self, d: str, m: ManifestInfo, tags: tuple[str, ...], dead_parents: list[str], untagged: set[str]
    ) -> str:
        if tags:
            return "all tags deleted"
        if m.subject:  # a referrer: its subject says more than the fallback index listing it
            return (
                f"referrer of deleted {short(m.subject)}"
                if m.subject in self.present
                else orphan_reason(m.subject)
            )
        if dead_parents:
            return f"child of deleted index {short(dead_parents[0])}"
        if d in self.ordered.untagged_reason:
            return self.ordered.untagged_reason[d]
        if d in untagged:
            return "untagged, unreferenced"
        return "unreferenced"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def plan(
    inventory: Inventory,
    resolve: Resolver,
    *,
    in_use: InUse | None = None,
    now: datetime,
    max_delete_fraction: float = 0.5,
    exempt_removed_repositories: bool = True,
    exempt_ttl_repositories: bool = True,
    untagged_known: bool | None = None,
    untagged_grace: timedelta = timedelta(hours=1),
    pulls: PullHistory | None = None,
) -> Plan:
    """Plan what a gc / expire run would delete.

    ``resolve(repo)`` gives each repository's RepoPolicy (None = no action there).
    ``in_use``: Kubernetes protection (``is_protected(repo, tag, digest) -> list``) or None for
    none (the plan then says ``kube_protection=False``). ``now``: the reference time (naive =
    UTC).

    Reclaim preview (``bytes_freed``, per repository and per manifest) is exact for the
    inventory: a blob (config, layer, or the manifest itself, by digest) counts once, and only if
    no kept manifest in any repository of the inventory references it. The storage of a
    registry is global, so a layer shared with a kept image elsewhere frees nothing. A blob freed
    by deletes in several repositories is attributed to the first repository in sorted order.
    It is exact when the inventory covers the whole registry and lists untagged manifests
    (storage access); otherwise it is an upper bound.

    Blast-radius cap (``cap.tally``): ``cap_tripped`` lists every repository whose deleted tags
    exceed ``max_delete_fraction`` of its tags, and ``<registry>`` when the plan deletes more
    than that fraction of all tags in the inventory. The registry-wide check always applies.
    Exempt from the per-repository check: a repository the tier removes whole
    (``exempt_removed_repositories``, default True) and one governed by a ``ttl`` rule
    (``exempt_ttl_repositories``, default True). Repositories an exemption spared that would
    otherwise have tripped are listed in ``Plan.cap_exempt`` (for the report).

    ``untagged_grace``: an untagged manifest pushed (storage revision time) less than this long
    ago is kept, with everything it references: a push may be in progress (children before
    their index, manifest before its tag). Default one hour.

    ``untagged_known``: whether the inventory lists untagged manifests (default: it does when
    push times came from storage). Only then is a signature whose subject is absent deleted as
    dangling.

    ``pulls``: the registry's pull history for ``pulled_within`` rules (``policy.pulled``).
    """
    if not 0 < max_delete_fraction <= 1:
        raise ValueError(f"max_delete_fraction must be in (0, 1], got {max_delete_fraction}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if untagged_known is None:
        untagged_known = inventory.push_time_source not in ("none", "", None)
    out = Plan(
        registry=inventory.registry,
        now=now,
        kube_protection=in_use is not None,
        max_delete_fraction=max_delete_fraction,
        untagged_known=untagged_known,
        push_time_source=inventory.push_time_source,
    )
    pols = {name: resolve(name) for name in sorted(inventory.repositories)}
    results = _plan_repositories(out, inventory, pols, in_use, untagged_grace, pulls)
    collect(out, inventory, results)
    out.cap_tripped, out.cap_exempt = tally(
        _repo_counts(results, pols),
        max_delete_fraction,
        exempt_removed=exempt_removed_repositories,
        exempt_ttl=exempt_ttl_repositories,
    )
    return out


def _plan_repositories(
    out: Plan,
    inventory: Inventory,
    pols: Mapping[str, RepoPolicy | None],
    in_use: InUse | None,
    untagged_grace: timedelta,
    pulls: PullHistory | None,
) -> dict[str, RepoResult]:
    """Each repository's plan (``_RepoPlanner``), its policy's name recorded in ``out``."""
    uses_pulls = any(p is not None and p.pull_windows for p in pols.values())
    pull_keep = PullKeep(pulls, out.now) if uses_pulls else None
    results: dict[str, RepoResult] = {}
    for name, pol in pols.items():
        out.policies[name] = pol.name if pol else NO_POLICY
        repo = inventory.repositories[name]
        src = inventory.push_time_source
        results[name] = _RepoPlanner(
            repo, pol, in_use, out.now, src, out.untagged_known, untagged_grace, pull_keep
        ).run()
    return results


def _repo_counts(results: Mapping[str, RepoResult], pols: Mapping[str, RepoPolicy | None]) -> list[RepoCount]:
    """What the blast-radius cap counts per repository: tags, deleted tags, removed whole, ttl."""
    return [
        RepoCount(
            name,
            len(res.tags),
            sum(1 for t in res.tags if t.action == DELETE),
            res.remove,
            (pol := pols[name]) is not None and pol.ttl is not None,
        )
        for name, res in results.items()
    ]
