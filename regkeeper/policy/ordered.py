"""Ordered rules (``tiers[].rules`` / ``gc.rules``, config in ``config/rulesets.py``): which rule
keeps or deletes a tag, or an untagged manifest.

Each rule selects tags by glob and ``tagStatus`` (tagged / untagged / any, as ECR). For one item
(a tag, or an untagged manifest when a rule selects untagged ones):

1. the first selecting rule whose keep condition holds keeps it: ``last`` N (the newest N
   images, i.e. digests, of THAT rule's selection, ranked by their newest selected tag's time),
   ``newerThan`` (pushed less than that long ago), ``pulledWithin`` (pulled within the window,
   ``policy/pulled.py``);
2. else the first selecting rule whose delete condition holds (``olderThan``) deletes it, unless
   a selecting rule keeps by ``pulledWithin`` and the pull history does not cover its window (the
   fail-safe: kept, and the reason says why);
3. else it is kept: no rule selects it, or no delete condition holds (age unknown included;
   the reason names the first olderThan not reached: ``pr: not older than 7d yet``).

Keep wins over delete (Artifact Registry cleanup policies); order only decides which rule is
named. Every verdict carries the rule's label. The rest of the engine (protect globs, referrers
with their subject, the reference graph, Kubernetes in-use, the cap) applies as for any policy:
``planner`` asks :class:`RepoRules` (which calls :func:`decide`) where it would call the
keepLast / keepDays verdict, and to seed the untagged manifests the rules keep.
"""

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..config.units import format_duration
from ..globs import match_any_tag
from ..models import RepoInventory
from .decisions import DELETE, KEEP
from .graph import is_real

if TYPE_CHECKING:
    from ..config.rulesets import RuleConfig
    from .pulled import PullKeep

# (keep | delete, reason, rule label or None when no rule selects the item)
RuleVerdict = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class OrderedRule:
    label: str
    tags: tuple[str, ...] = ("*",)
    status: str = "tagged"  # tagged | untagged | any
    keep_last: int | None = None
    keep_newer: timedelta | None = None
    keep_pulled: timedelta | None = None
    delete_older: timedelta | None = None

    def selects(self, tag: str | None) -> bool:
        """Whether the rule selects a tag (None: an untagged manifest)."""
        if tag is None:
            return self.status in ("untagged", "any")
        return self.status in ("tagged", "any") and match_any_tag(self.tags, tag) is not None

    def describe(self) -> str:
        sel = "untagged" if self.status == "untagged" else ",".join(self.tags)
        if self.status == "any":
            sel += " + untagged"
        keep = [
            f"last {self.keep_last}" if self.keep_last is not None else "",
            f"newer than {format_duration(self.keep_newer)}" if self.keep_newer is not None else "",
            f"pulled within {format_duration(self.keep_pulled)}" if self.keep_pulled is not None else "",
        ]
        parts = [f"keep {' or '.join(k for k in keep if k)}"] if any(keep) else []
        if self.delete_older is not None:
            parts.append(f"delete older than {format_duration(self.delete_older)}")
        return f"{self.label} [{sel}: {'; '.join(parts)}]"


def from_config(rules: "Iterable[RuleConfig]") -> tuple[OrderedRule, ...]:
    out = []
    for i, r in enumerate(rules):
        k = r.keep
        out.append(
            OrderedRule(
                label=r.name or f"rules[{i}]",
                tags=tuple(r.tags or ("*",)),
                status=r.tag_status,
                keep_last=k.last if k else None,
                keep_newer=k.newer_than if k else None,
                keep_pulled=k.pulled_within if k else None,
                delete_older=r.delete.older_than if r.delete else None,
            )
        )
    return tuple(out)


def rank_images(newest: Mapping[str, datetime]) -> dict[str, int]:
    """digest -> rank for keepLast, 0 = newest image (by its newest tag; ties by digest)."""
    order = sorted(newest, key=lambda d: (-newest[d].timestamp(), d))
    return {d: i for i, d in enumerate(order)}


@dataclass(frozen=True, slots=True)
class Item:
    """A tag (``tag`` set) or an untagged manifest (``tag`` None) to decide."""

    tag: str | None
    digest: str
    when: datetime | None  # push time (or created), None = unknown


def untagged_items(r: RepoInventory, present: set[str], parents: Mapping[str, Iterable[str]]) -> list[Item]:
    """The untagged manifests ordered rules decide: those nothing present references (an index
    child follows its index, a referrer its subject), dated by push (else created) time."""
    out = []
    for d in r.untagged:
        m = r.manifests.get(d)
        if m is None or not is_real(m) or (m.subject and m.subject in present):
            continue
        if not any(p in present for p in parents.get(d, ())):
            out.append(Item(None, d, r.untagged_pushed.get(d) or m.created))
    return out


def decide(
    rules: tuple[OrderedRule, ...],
    items: Iterable[Item],
    *,
    repository: str,
    now: datetime,
    pulls: "PullKeep | None",
) -> dict[str, RuleVerdict]:
    """Every item's verdict, by tag (a tag item) or digest (an untagged manifest)."""
    items = list(items)
    ranks = [_ranks(rule, items) if rule.keep_last is not None else {} for rule in rules]
    out: dict[str, RuleVerdict] = {}
    for it in items:
        age = None if it.when is None else now - it.when
        sel = [(rule, rank) for rule, rank in zip(rules, ranks, strict=True) if rule.selects(it.tag)]
        out[it.digest if it.tag is None else it.tag] = _verdict(sel, it, age, repository, pulls)
    return out


class RepoRules:
    """The planner's ordered-rules side for one repository: the verdicts on its tags and its
    untagged manifests, which rule decided each (``rule``), and why an untagged manifest is
    deleted (``untagged_reason``). With no ordered rules: no verdicts, ``rule`` is the policy."""

    def __init__(
        self,
        rules: tuple[OrderedRule, ...],
        r: RepoInventory,
        policy: str,
        now: datetime,
        pulls: "PullKeep | None",
    ):
        self.rules, self.r, self.policy, self.now, self.pulls = rules, r, policy, now, pulls
        self.rule_of: dict[str, str] = {}  # tag or untagged digest -> "<policy>/<rule label>"
        self.untagged_reason: dict[str, str] = {}  # untagged digest the rules delete -> why

    def rule(self, key: str) -> str:
        """The rule that decided a tag or an untagged digest (else the policy's name)."""
        return self.rule_of.get(key, self.policy)

    def tag_verdicts(
        self, times: Mapping[str, datetime | None], referrer_tags: Container[str]
    ) -> dict[str, tuple[str, str]]:
        """tag -> (keep | delete, reason) for every tag that is not a referrer's."""
        if not self.rules:
            return {}
        items = [Item(t, d, times[t]) for t, d in self.r.tags.items() if t not in referrer_tags]
        got = decide(self.rules, items, repository=self.r.name, now=self.now, pulls=self.pulls)
        self.rule_of.update({t: f"{self.policy}/{v[2]}" for t, v in got.items() if v[2]})
        return {t: (v[0], v[1]) for t, v in got.items()}

    def untagged_kept(self, present: set[str], parents: Mapping[str, Iterable[str]]) -> dict[str, str]:
        """The rules decide the untagged manifests nothing present references (one no rule
        selects is kept; referenced ones follow what references them): digest -> why kept; the
        deleted ones' reasons go to ``untagged_reason``."""
        items = untagged_items(self.r, present, parents)
        got = decide(self.rules, items, repository=self.r.name, now=self.now, pulls=self.pulls)
        kept: dict[str, str] = {}
        for d, (action, reason, label) in got.items():
            self.rule_of.update({d: f"{self.policy}/{label}"} if label else {})
            (kept if action == KEEP else self.untagged_reason)[d] = f"untagged, {reason}"
        return kept


def _ranks(rule: OrderedRule, items: list[Item]) -> dict[str, int]:
    newest: dict[str, datetime] = {}
    for it in items:
        if it.when is not None and rule.selects(it.tag):
            if it.digest not in newest or it.when > newest[it.digest]:
                newest[it.digest] = it.when
    return rank_images(newest)


def _verdict(
    sel: list[tuple[OrderedRule, dict[str, int]]],
    it: Item,
    age: timedelta | None,
    repository: str,
    pulls: "PullKeep | None",
) -> RuleVerdict:
    what = "tag" if it.tag is not None else "untagged manifest"
    if not sel:
        return KEEP, f"no rule selects this {what}", None
    for rule, rank in sel:
        why = _keeps(rule, rank.get(it.digest), age, repository, it.digest, pulls)
        if why:
            return KEEP, f"{rule.label}: {why}", rule.label
    deleting = [r for r, _ in sel if r.delete_older is not None]
    if deleting and age is None:
        return KEEP, f"{deleting[0].label}: age unknown", deleting[0].label
    for rule in deleting:
        assert rule.delete_older is not None
        if age is not None and age > rule.delete_older:
            safe = _history_short(sel, pulls)
            if safe is not None:
                return KEEP, f"{safe[0]}: {safe[1]}", safe[0]
            return DELETE, f"{rule.label}: older than {format_duration(rule.delete_older)}", rule.label
    if deleting:  # say which condition does not hold yet, in the config's words
        d = deleting[0]
        assert d.delete_older is not None
        return KEEP, f"{d.label}: not older than {format_duration(d.delete_older)} yet", d.label
    first = sel[0][0].label
    return KEEP, f"{first}: no delete condition (keep conditions only)", first


def _keeps(
    rule: OrderedRule,
    rank: int | None,
    age: timedelta | None,
    repository: str,
    digest: str,
    pulls: "PullKeep | None",
) -> str | None:
    if rule.keep_last is not None and rank is not None and rank < rule.keep_last:
        return f"among newest {rule.keep_last} of its selection"
    if rule.keep_newer is not None and age is not None and age <= rule.keep_newer:
        return f"newer than {format_duration(rule.keep_newer)}"
    if rule.keep_pulled is not None and pulls is not None:
        return pulls.pulled(rule.keep_pulled, repository, digest)
    return None


def _history_short(
    sel: list[tuple[OrderedRule, dict[str, int]]], pulls: "PullKeep | None"
) -> tuple[str, str] | None:
    """(rule, why) when a selecting rule keeps by pulledWithin and the history cannot tell."""
    for rule, _ in sel:
        if rule.keep_pulled is not None:
            why = "pull history unavailable" if pulls is None else pulls.shortfall(rule.keep_pulled)
            if why:
                return rule.label, why
    return None
