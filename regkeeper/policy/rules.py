"""Retention rules: which policy governs a repository, and what it says about one tag.

One :class:`RepoPolicy` per repository, chosen by a resolver:

- gc (:func:`gc_resolver`): ``days`` + ``keepLast`` + ``protect`` globs, ``include``/``exclude``
  repository globs. A tag is deleted only when it is beyond the newest ``keepLast`` images AND
  older than ``days`` AND no protect glob matches it.
- tiers (:func:`tier_resolver`, expire flow): first matching tier wins; unmatched repositories
  fall to the default tier (default: no action).

  * ``keep: forever``: nothing in the repository is deleted.
  * ``keepLast`` / ``keepDays`` (ECR lifecycle / Harbor retention semantics): keep the newest N
    images AND everything younger than D days; an image is deleted only if it is beyond
    ``keepLast`` AND older than ``keepDays``. With only one of the two, only that one applies.
  * ``ttl`` (the seed's 72h ``temp`` tier, :func:`ttl_verdict`): a tag is expired when its age
    exceeds the TTL. With ``deleteRepository: true``, a repository whose every tag is deleted by
    the plan is removed whole (:func:`removes_repository`). The per-repository blast-radius cap
    does not apply to a ttl repository (only the registry-wide cap does): see ``cap.tally``.

Ages (:func:`tag_time`): the push time when the storage knows it (``RepoInventory.push_times[tag]``,
source ``push:filesystem`` / ``push:s3``), else the manifest's ``created`` (``created:config`` /
``created:annotation``). A tag whose age is unknown is never deleted by an age rule (reason
``age unknown``) and is not ranked for ``keepLast`` (so it cannot push a dated image out).

``keepLast`` counts images (distinct manifest digests), not tag names, as ECR and Harbor do; an
image's age for ranking is its newest tag's age (:func:`rank_images`). Signature / attestation /
referrers-index tags are not counted: they follow their subject (verdict ``follow``).

Ordered ``rules`` (``policy/ordered.py``) replace keepLast / keepDays / ttl in a policy: several
rules selecting tags by glob and tag status, keep winning over delete, each verdict naming its
rule. Protect globs and referrers (above) still come first.

A verdict here is the rule's word only: the reference graph and Kubernetes may still keep a tag
the rule would delete (see ``graph`` and ``planner``).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..config import TierConfig, format_duration
from ..globs import match_any_path, match_any_tag, select
from ..models import RepoInventory
from .decisions import DELETE, KEEP
from .graph import short
from .ordered import OrderedRule, from_config

NO_POLICY = "none"
FOLLOW = "follow"  # verdict of a signature / referrer tag whose subject is present: it follows it

Verdict = tuple[str, str]  # (keep | delete | follow, reason)


@dataclass(frozen=True, slots=True)
class RepoPolicy:
    """The rule set for one repository.

    ``name`` labels decisions (``gc``, ``tier:temp``). ``keep_last`` counts images (digests).
    ``max_age`` is keepDays / gc ``days`` as a timedelta. ``ttl`` excludes keep_last/max_age.
    ``delete_repository`` (only with ttl) lists a fully expired repository for removal.
    ``protect`` are tag globs that always keep. ``delete_untagged`` deletes untagged manifests
    nothing references (those reachable from deleted tags are deleted with them regardless).
    """

    name: str
    keep_forever: bool = False
    keep_last: int | None = None
    max_age: timedelta | None = None
    ttl: timedelta | None = None
    delete_repository: bool = False
    protect: tuple[str, ...] = ()
    delete_untagged: bool = True
    pulled_within: timedelta | None = None  # keep what was pulled within (see policy/pulled.py)
    rules: tuple[OrderedRule, ...] = ()  # ordered rules (policy/ordered.py) instead of the keys

    def __post_init__(self):
        if not isinstance(self.protect, tuple):
            object.__setattr__(self, "protect", tuple(self.protect or ()))
        if self.keep_last is not None and self.keep_last < 0:
            raise ValueError(f"policy {self.name}: keep_last must be >= 0, got {self.keep_last}")
        for key in ("max_age", "ttl"):
            v = getattr(self, key)
            if v is not None and v < timedelta(0):
                raise ValueError(f"policy {self.name}: {key} must not be negative")
        if self.ttl is not None and (self.keep_last is not None or self.max_age is not None):
            raise ValueError(f"policy {self.name}: ttl cannot be combined with keep_last/max_age")
        if self.delete_repository and self.ttl is None:
            raise ValueError(f"policy {self.name}: delete_repository only applies with ttl")
        legacy = (self.keep_last, self.max_age, self.ttl, self.pulled_within)
        if self.rules and (self.keep_forever or any(v is not None for v in legacy)):
            raise ValueError(f"policy {self.name}: rules cannot be combined with keep_last/max_age/ttl")

    @property
    def pull_windows(self) -> list[timedelta]:
        """Every pulledWithin window the policy uses (its own and its rules')."""
        ws = [r.keep_pulled for r in self.rules if r.keep_pulled is not None]
        return ws + ([self.pulled_within] if self.pulled_within is not None else [])

    @property
    def keep_days(self) -> float | None:
        return None if self.max_age is None else self.max_age / timedelta(days=1)

    def describe(self) -> str:
        if self.keep_forever:
            parts = ["keep forever"]
        elif self.ttl is not None:
            parts = [f"ttl {format_duration(self.ttl)}"]
            if self.delete_repository:
                parts.append("deleteRepository")
        elif self.rules:
            parts = ["rules " + ", ".join(r.describe() for r in self.rules)]
        else:
            parts = []
            if self.keep_last is not None:
                parts.append(f"keepLast {self.keep_last}")
            if self.max_age is not None:
                parts.append(f"older than {format_duration(self.max_age)}")
        if self.protect:
            parts.append("protect " + ",".join(self.protect))
        if self.pulled_within is not None:
            parts.append(f"pulled within {format_duration(self.pulled_within)}")
        return f"{self.name}: " + ("; ".join(parts) or "no rule")


Resolver = Callable[[str], "RepoPolicy | None"]


# --------------------------------------------------------------------------- resolvers


def _cached(fn: Resolver) -> Resolver:
    cache: dict[str, RepoPolicy | None] = {}

    def resolve(repo: str) -> RepoPolicy | None:
        if repo not in cache:
            cache[repo] = fn(repo)
        return cache[repo]

    return resolve


def gc_resolver(
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
    days: float | None,
    keep_last: int | None,
    protect: Iterable[str] = (),
    *,
    delete_untagged: bool = True,
    name: str = "gc",
    pulled_within: timedelta | None = None,
    rules: Iterable[Any] = (),
) -> Resolver:
    """gc rules: repositories selected by include/exclude globs get ``RepoPolicy(days,
    keep_last, protect)``; the others get None (no action). ``days=None`` disables the age
    condition (only keepLast then decides). ``rules`` (config ``RuleConfig`` or ``OrderedRule``):
    ordered rules instead of days / keepLast (``policy/ordered.py``)."""
    inc = list(include or [])
    exc = list(exclude or [])
    ordered = _ordered(rules)
    pol = RepoPolicy(
        name=name,
        keep_last=None if ordered else keep_last,
        max_age=None if days is None or ordered else timedelta(days=days),
        rules=ordered,
        protect=tuple(protect or ()),
        delete_untagged=delete_untagged,
        pulled_within=pulled_within,
    )
    return _cached(lambda repo: pol if select(repo, inc, exc) else None)


def tier_policy(
    tier: "TierConfig | Mapping[str, Any] | RepoPolicy",
    *,
    protect: Iterable[str] = (),
    label: str | None = None,
) -> RepoPolicy:
    """A RepoPolicy from a tier (TierConfig or its YAML dict: keepLast/keepDays/ttl/...)."""
    if isinstance(tier, RepoPolicy):
        return tier
    if isinstance(tier, Mapping):
        tier = TierConfig.model_validate(dict(tier))
    return RepoPolicy(
        name=label or f"tier:{tier.name}",
        keep_forever=tier.keep == "forever",
        keep_last=tier.keep_last,
        max_age=None if tier.keep_days is None else timedelta(days=tier.keep_days),
        ttl=tier.ttl,
        delete_repository=tier.delete_repository,
        protect=tuple(tier.protect) + tuple(protect or ()),
        pulled_within=tier.pulled_within,
        rules=_ordered(tier.rules or ()),
    )


def _ordered(rules: Iterable[Any]) -> tuple[OrderedRule, ...]:
    rules = list(rules or ())
    if all(isinstance(r, OrderedRule) for r in rules):
        return tuple(rules)
    return from_config(rules)


def tier_resolver(
    tiers: Iterable["TierConfig | Mapping[str, Any]"],
    default: "str | TierConfig | Mapping[str, Any] | RepoPolicy | None" = None,
    *,
    protect: Iterable[str] = (),
) -> Resolver:
    """Expire rules: the first tier whose ``match`` globs match the repository wins; others fall
    to ``default`` (a tier name from ``tiers``, a tier, a RepoPolicy, or None = no action).
    ``protect`` globs are added to every tier's own ``protect``."""
    prot = tuple(protect or ())
    compiled: list[tuple[list[str], RepoPolicy]] = []
    by_name: dict[str, Any] = {}
    for t in tiers:
        tc = TierConfig.model_validate(dict(t)) if isinstance(t, Mapping) else t
        compiled.append((list(tc.match), tier_policy(tc, protect=prot)))
        by_name.setdefault(tc.name, tc)
    dflt: RepoPolicy | None
    if default is None:
        dflt = None
    elif isinstance(default, str):
        if default not in by_name:
            raise ValueError(
                f"default tier {default!r} is not one of the tiers "
                f"({', '.join(by_name) or 'none configured'})"
            )
        dflt = tier_policy(by_name[default], protect=prot, label=f"tier:{default} (default)")
    else:
        dflt = tier_policy(default, protect=prot)

    def resolve(repo: str) -> RepoPolicy | None:
        for pats, pol in compiled:
            if match_any_path(pats, repo) is not None:
                return pol
        return dflt

    return _cached(resolve)


# --------------------------------------------------------------------------- ages and ranking


def tag_time(r: RepoInventory, tag: str, digest: str, push_label: str) -> tuple[datetime | None, str | None]:
    """When a tag was pushed (storage push time, labelled ``push_label``), else when its image
    was created (config / annotation); (None, None) when unknown."""
    t = r.push_times.get(tag)
    if t is not None:
        return t, push_label
    m = r.manifests.get(digest)
    if m is not None and m.created is not None:
        return m.created, f"created:{m.created_source}" if m.created_source else "created"
    return None, None


def ranks_images(pol: RepoPolicy | None) -> bool:
    """Whether the policy needs the keepLast ranking (a count rule that is not ttl / forever)."""
    return bool(pol and pol.keep_last is not None and pol.ttl is None and not pol.keep_forever)


# --------------------------------------------------------------------------- verdicts


def tag_verdict(
    pol: RepoPolicy | None,
    tag: str,
    age: timedelta | None,
    rank: int | None,
    subject: tuple[str, str] | None,
    subject_present: bool,
    untagged_known: bool,
    ordered: Verdict | None = None,
) -> Verdict:
    """The rule's verdict on one tag: ``(keep | delete | follow, reason)``.

    ``age``: now minus the tag's time (None = unknown). ``rank``: its image's keepLast rank
    (None = not ranked). ``subject``: (digest, kind) when the tag is a signature / attestation /
    referrers tag, with ``subject_present`` saying whether that digest is in the repository.
    ``ordered``: the ordered rules' verdict (``policy/ordered.py``) when the policy has rules."""
    if pol is None:
        return KEEP, "no policy for this repository"
    if pol.keep_forever:
        return KEEP, "keep forever"
    pat = match_any_tag(pol.protect, tag) if pol.protect else None
    if pat is not None:
        return KEEP, f"protected tag pattern '{pat}'"
    if subject is not None:
        return _subject_verdict(subject, subject_present, untagged_known)
    if ordered is not None:
        return ordered
    if pol.ttl is not None:
        return ttl_verdict(pol.ttl, age)
    return _count_age_verdict(pol, age, rank)


def orphan_reason(subject: str) -> str:
    """Why an orphan referrer (signature, attestation, SBOM, fallback index) is deleted."""
    return f"orphan referrer: subject {short(subject)} is gone"


def _subject_verdict(subject: tuple[str, str], present: bool, untagged_known: bool) -> Verdict:
    """A referrer lives and dies with its subject (its own age is irrelevant); an orphan goes
    only when the inventory lists untagged manifests (otherwise its subject may exist
    untagged)."""
    if present:
        return FOLLOW, f"{subject[1]} of {short(subject[0])}"
    if untagged_known:
        return DELETE, orphan_reason(subject[0])
    return KEEP, "referrer's subject not among tags (untagged manifests not visible without storage access)"


def ttl_verdict(ttl: timedelta, age: timedelta | None) -> Verdict:
    """The ttl rule (the ``temp`` tier's 72h): expired when older than the ttl."""
    if age is None:
        return KEEP, "age unknown"
    if age > ttl:
        return DELETE, f"expired: older than ttl {format_duration(ttl)}"
    return KEEP, f"younger than ttl {format_duration(ttl)}"


def _count_age_verdict(pol: RepoPolicy, age: timedelta | None, rank: int | None) -> Verdict:
    """keepLast / keepDays (gc ``days``): deleted only beyond keepLast AND older than the age."""
    if pol.keep_last is None and pol.max_age is None:
        return KEEP, "no rule"
    if age is None:
        return KEEP, "age unknown"
    if pol.keep_last is not None and (pol.keep_last if rank is None else rank) < pol.keep_last:
        return KEEP, f"among newest {pol.keep_last}"
    if pol.max_age is not None and age <= pol.max_age:
        return KEEP, f"younger than {format_duration(pol.max_age)}"
    if pol.max_age is not None:
        beyond = f", beyond newest {pol.keep_last}" if pol.keep_last else ""
        return DELETE, f"older than {format_duration(pol.max_age)}{beyond}"
    return DELETE, f"beyond newest {pol.keep_last}"


def removes_repository(pol: RepoPolicy | None, all_tags_deleted: bool, nothing_left: bool) -> bool:
    """ttl + ``deleteRepository``: the repository is removed whole when every tag expired and
    everything in it was seen and is deleted (removing it from storage also removes what the
    scan could not read: placeholders, errors)."""
    return bool(pol and pol.ttl is not None and pol.delete_repository and all_tags_deleted and nothing_left)
