"""Policy engine: the pure planner behind the gc and expire flows.

``plan(inventory, resolve, in_use=..., now=...)`` turns an inventory and per-repository rules
into a :class:`Plan`: one decision per tag and per manifest, each naming the rule and the reason
that decided it, the exact bytes a run would free, the order in which manifests are safe to
delete, the repositories a tier removes whole, and whether the blast-radius cap trips. No I/O,
no clock (``now`` is given), no Prefect.

- ``rules``: RepoPolicy, the gc / tier resolvers, keepLast / keepDays / ttl (the 72h temp rule) /
  protect globs, ages.
- ``ordered``: ordered ``rules:`` (tag globs + tagStatus; keep wins over delete; unselected kept;
  each verdict names its rule), called by the planner where keepLast / keepDays would decide.
- ``pulled``: the pulledWithin keep condition and its fail-safe.
- ``graph``: the reference graph (index children, signature tags, ``subject`` referrers, shared
  digests), protection spreading through it, in-use protection, the delete order.
- ``decisions``: TagDecision, ManifestDecision, Plan and its rows / summary.
- ``planner``: plan(), in named steps.
- ``freed``: the reclaim preview, the exact bytes each delete frees.
- ``cap``: THE blast-radius cap check.
"""

from .cap import (
    REGISTRY_SCOPE,
    CapBreach,
    RepoCount,
    check_cap,
    check_plan_cap,
    over_cap,
    refuse_tripped,
    tally,
)
from .decisions import DELETE, KEEP, Action, ManifestDecision, Plan, TagDecision
from .graph import (
    InUse,
    InUseProtection,
    KeptSet,
    RepoGraph,
    delete_levels,
    inventory_references,
    is_real,
    manifest_references,
    short,
    tag_subject,
)
from .planner import plan
from .rules import (
    FOLLOW,
    NO_POLICY,
    RepoPolicy,
    Resolver,
    gc_resolver,
    tag_verdict,
    tier_policy,
    tier_resolver,
    ttl_verdict,
)

__all__ = [
    "DELETE",
    "FOLLOW",
    "KEEP",
    "NO_POLICY",
    "REGISTRY_SCOPE",
    "Action",
    "CapBreach",
    "InUse",
    "InUseProtection",
    "KeptSet",
    "ManifestDecision",
    "Plan",
    "RepoCount",
    "RepoGraph",
    "RepoPolicy",
    "Resolver",
    "TagDecision",
    "check_cap",
    "check_plan_cap",
    "delete_levels",
    "inventory_references",
    "manifest_references",
    "gc_resolver",
    "is_real",
    "over_cap",
    "plan",
    "refuse_tripped",
    "short",
    "tag_subject",
    "tag_verdict",
    "tally",
    "tier_policy",
    "tier_resolver",
    "ttl_verdict",
]
