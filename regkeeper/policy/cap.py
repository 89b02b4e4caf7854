"""The blast-radius cap: one run never deletes more than the configured fraction of what it
looks at without an explicit override (``force``).

- :func:`over_cap` is THE rule (more than ``max_fraction`` of ``total``).
- :func:`check_cap` is THE check for any job that deletes: it takes the numbers (planned
  deletes, total, max fraction, force, what is counted) and returns None (go ahead) or the
  refusal reason; a forced override is logged.
- :func:`tally` applies the rule to a gc / expire plan: per repository (with the ttl /
  removed-whole exemptions) and registry-wide (``<registry>``, always); ``plan()`` stores the
  result in ``Plan.cap_tripped`` / ``Plan.cap_exempt`` and :func:`check_plan_cap` is the gc /
  expire convenience wrapper that refuses on them.
"""

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .decisions import Plan

log = logging.getLogger(__name__)

REGISTRY_SCOPE = "<registry>"


class CapBreach(NamedTuple):
    scope: str  # repository name or "<registry>"
    deleted: int
    total: int
    unit: str = "tags"  # what is counted ("cached images" for a cache's eviction)

    @property
    def fraction(self) -> float:
        return self.deleted / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.scope}: {self.deleted}/{self.total} {self.unit} ({self.fraction:.0%})"


def over_cap(deleted: int, total: int, max_fraction: float) -> bool:
    """THE rule: deleting ``deleted`` of ``total`` is more than ``max_fraction`` of them
    (deleting anything out of a total of zero is too)."""
    return deleted > 0 and (not total or deleted / total > max_fraction)


def check_cap(
    planned_deletes: int,
    total: int,
    max_fraction: float,
    force: bool = False,
    what: str = REGISTRY_SCOPE,
    *,
    action: str = "the plan deletes",
    key: str | None = None,
    unit: str = "tags",
) -> str | None:
    """THE blast-radius check: None when ``planned_deletes`` of ``total`` are within
    ``max_fraction`` (or ``force`` overrides, which is logged), else the refusal reason.
    ``what`` names the scope counted (a repository, ``<registry>``, a replication rule and
    target); ``action`` and ``key`` (the config key the fraction comes from) only word the
    reason (see :func:`refuse_tripped`)."""
    tripped = (
        [CapBreach(what, planned_deletes, total, unit)]
        if over_cap(planned_deletes, total, max_fraction)
        else []
    )
    return refuse_tripped(tripped, max_fraction, force, action=action, key=key)


def refuse_tripped(
    tripped: Sequence[CapBreach],
    max_fraction: float,
    force: bool,
    *,
    action: str = "the plan deletes",
    key: str | None = None,
) -> str | None:
    """None when nothing tripped or ``force`` overrides (logged); else why nothing is deleted:
    ``blast-radius cap: <action> more than <max> [(<key>)] of the tags of <scope>: <n>/<total>
    tags (<pct>); nothing was deleted. Re-run with --force to override.``"""
    if not tripped:
        return None
    text = "; ".join(str(c) for c in tripped)
    if force:
        log.warning("blast-radius cap tripped (%s) and overridden by force", text)
        return None
    limit = f"{max_fraction:.0%}" + (f" ({key})" if key else "")
    return (
        f"blast-radius cap: {action} more than {limit} of the {tripped[0].unit} of {text}; nothing was "
        "deleted. Re-run with --force (flow parameter force) to override."
    )


def check_plan_cap(plan: "Plan", force: bool) -> str | None:
    """gc / expire: None when the run may proceed; else the refusal reason (every breach
    ``plan()`` found, per repository and registry-wide)."""
    return refuse_tripped(plan.cap_tripped, plan.max_delete_fraction, force)


class RepoCount(NamedTuple):
    """One repository's tag counts in a plan, and what could exempt it from the per-repository
    check."""

    name: str
    tags: int
    deleted: int
    removed_whole: bool  # the tier removes the repository (ttl + deleteRepository)
    ttl: bool  # governed by a ttl rule


def tally(
    counts: Iterable[RepoCount], max_fraction: float, *, exempt_removed: bool = True, exempt_ttl: bool = True
) -> tuple[list[CapBreach], list[CapBreach]]:
    """(tripped, exempt) for a gc / expire plan.

    Every repository whose deleted tags exceed ``max_fraction`` of its tags trips, and
    ``<registry>`` trips when the plan deletes more than that fraction of all tags. The
    registry-wide check always applies, and every repository's deleted tags count toward it.
    Two exemptions from the per-repository check (spared repositories are listed as exempt):

    - ``exempt_removed``: a repository the tier removes whole, since going whole is the intent.
    - ``exempt_ttl``: a repository governed by a ``ttl`` rule. Under a TTL every tag's fate is its
      own age against a declared lifetime; that most tags of a temp repository expire together
      is the rule working, not a runaway rule. A TTL misapplied at scale (a glob that matches
      too much, a wrong clock or ``created``) shows up in the registry-wide fraction.
    """
    tripped: list[CapBreach] = []
    exempt: list[CapBreach] = []
    all_tags = all_deleted = 0
    for c in counts:
        all_tags += c.tags
        all_deleted += c.deleted
        if not over_cap(c.deleted, c.tags, max_fraction):
            continue
        breach = CapBreach(c.name, c.deleted, c.tags)
        if (exempt_removed and c.removed_whole) or (exempt_ttl and c.ttl):
            exempt.append(breach)
        else:
            tripped.append(breach)
    if over_cap(all_deleted, all_tags, max_fraction):
        tripped.append(CapBreach(REGISTRY_SCOPE, all_deleted, all_tags))
    return tripped, exempt
