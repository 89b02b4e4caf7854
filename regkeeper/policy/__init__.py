"""Policy engine (being split into rules, graph, decisions, planner, cap)."""

from .planner import *  # noqa: F401,F403
from .planner import (DELETE, KEEP, NO_POLICY, REGISTRY_SCOPE, CapBreach, InUse, ManifestDecision,  # noqa: F401
                      Plan, RepoPolicy, Resolver, TagDecision, gc_resolver, plan, short, tag_subject,
                      tier_policy, tier_resolver)
