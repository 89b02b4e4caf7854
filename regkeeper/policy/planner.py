"""Policy engine: the pure planner behind the gc and expire flows.

``plan(inventory, resolve, in_use=..., now=...)`` turns an :class:`~regkeeper.models.Inventory`
and per-repository rules into a :class:`Plan`: one decision per tag and per manifest, each
naming the rule and the reason that decided it, the exact bytes a run would free, the order
in which manifests are safe to delete, the repositories a tier removes whole, and whether the
blast-radius cap trips. No I/O, no clock (``now`` is given), no Prefect.

Rules (one :class:`RepoPolicy` per repository, chosen by a resolver):

- gc (:func:`gc_resolver`): ``days`` + ``keepLast`` + ``protect`` globs, ``include``/``exclude``
  repository globs. A tag is deleted only when it is beyond the newest ``keepLast`` images AND
  older than ``days`` AND no protect glob matches it.
- tiers (:func:`tier_resolver`, expire flow): first matching tier wins; unmatched repositories
  fall to the default tier (default: no action).

  * ``keep: forever``: nothing in the repository is deleted.
  * ``keepLast`` / ``keepDays`` (ECR lifecycle / Harbor retention semantics): keep the newest N
    images AND everything younger than D days; an image is deleted only if it is beyond
    ``keepLast`` AND older than ``keepDays``. With only one of the two, only that one applies.
  * ``ttl`` (e.g. 72h): a tag is expired when its age exceeds the TTL. With
    ``deleteRepository: true``, a repository whose every tag is deleted by the plan is listed in
    ``Plan.repositories_to_remove``. The per-repository blast-radius cap does not apply to a
    ttl repository (only the registry-wide cap does): see :func:`plan`.

Ages: the push time when the storage knows it (``RepoInventory.push_times[tag]``, source
``push:filesystem`` / ``push:s3``), else the manifest's ``created`` (``created:config`` /
``created:annotation``). A tag whose age is unknown is never deleted by an age rule (reason
``age unknown``) and is not ranked for ``keepLast`` (so it cannot push a dated image out).

``keepLast`` counts images (distinct manifest digests), not tag names, as ECR and Harbor do; an
image's age for ranking is its newest tag's age. Signature / attestation / referrers-index tags
are not counted: they follow their subject.

Graph rules, applied to a fixpoint per repository (protection only ever grows):

- ``DELETE /v2/<repo>/manifests/<digest>`` removes every tag on that digest, so a digest is
  deleted only when every tag on it is deleted; one kept tag keeps all of them
  (``shares digest with kept tag <t>``).
- A kept index keeps its children (tagged or not); a child is deleted only when no kept
  manifest in the repository references it.
- Signature / attestation tags (``sha256-<hex>.sig/.att/.sbom``), OCI referrers-fallback index
  tags (``sha256-<hex>``) and OCI ``subject`` referrers live and die with their subject. One kept
  for its own sake (protect glob, in use) keeps its subject too, so our deletes never leave an
  orphan. A signature whose subject is not in the repository at all is deleted
  (``dangling signature``) -- only when the inventory lists untagged manifests (storage access);
  without it the subject may still exist untagged, and the signature is kept.
- Kubernetes: ``in_use.is_protected(repo, tag, digest)`` returning a non-empty list keeps the tag
  / digest (reason ``in use``, sources recorded; the expire report calls these "expired but in
  use"). ``in_use=None`` means no Kubernetes protection (``Plan.kube_protection`` is False).

Cost is linear in tags + manifests + blob references: each digest is visited once by the
fixpoint and asked about in Kubernetes at most once.
"""

import heapq
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple, Protocol

from ..config import TierConfig, format_duration
from ..globs import match_any_path, match_any_tag, select
from ..models import Inventory, ManifestInfo, RepoInventory, signature_subject

Action = Literal["keep", "delete"]
KEEP: Action = "keep"
DELETE: Action = "delete"

REGISTRY_SCOPE = "<registry>"
NO_POLICY = "none"

# OCI 1.1 referrers tag schema (registries without the referrers API, e.g. distribution 2.8):
# an index tagged `sha256-<subject hex>` lists the subject's referrers.
_REFERRERS_TAG_RE = re.compile(r"^sha256-([0-9a-f]{64})$")


def tag_subject(tag: str) -> tuple[str, str] | None:
    """(subject digest, kind) for a tag that lives with a subject: cosign ``.sig/.att/.sbom``
    (kind sig/att/sbom) or the OCI referrers-fallback index tag (kind ``referrers``)."""
    s = signature_subject(tag)
    if s:
        return s
    m = _REFERRERS_TAG_RE.match(tag)
    if m:
        return f"sha256:{m.group(1)}", "referrers"
    return None


def short(digest: str) -> str:
    """``sha256:0123456789ab`` (algorithm + 12 hex), for reasons meant to be read."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


class InUse(Protocol):
    """What the planner needs from the Kubernetes side (regkeeper.kube)."""

    def is_protected(self, repo: str, tag: str | None, digest: str) -> list: ...


# --------------------------------------------------------------------------- policies


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
        else:
            parts = []
            if self.keep_last is not None:
                parts.append(f"keepLast {self.keep_last}")
            if self.max_age is not None:
                parts.append(f"older than {format_duration(self.max_age)}")
        if self.protect:
            parts.append("protect " + ",".join(self.protect))
        return f"{self.name}: " + ("; ".join(parts) or "no rule")


Resolver = Callable[[str], "RepoPolicy | None"]


def _cached(fn: Resolver) -> Resolver:
    cache: dict[str, RepoPolicy | None] = {}

    def resolve(repo: str) -> RepoPolicy | None:
        if repo not in cache:
            cache[repo] = fn(repo)
        return cache[repo]
    return resolve


def gc_resolver(include: Iterable[str] | None, exclude: Iterable[str] | None, days: float | None,
                keep_last: int | None, protect: Iterable[str] = (), *,
                delete_untagged: bool = True, name: str = "gc") -> Resolver:
    """gc rules: repositories selected by include/exclude globs get ``RepoPolicy(days,
    keep_last, protect)``; the others get None (no action). ``days=None`` disables the age
    condition (only keepLast then decides)."""
    inc = list(include or [])
    exc = list(exclude or [])
    pol = RepoPolicy(name=name, keep_last=keep_last,
                     max_age=None if days is None else timedelta(days=days),
                     protect=tuple(protect or ()), delete_untagged=delete_untagged)
    return _cached(lambda repo: pol if select(repo, inc, exc) else None)


def tier_policy(tier: "TierConfig | Mapping[str, Any] | RepoPolicy", *,
                protect: Iterable[str] = (), label: str | None = None) -> RepoPolicy:
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
    )


def tier_resolver(tiers: Iterable["TierConfig | Mapping[str, Any]"],
                  default: "str | TierConfig | Mapping[str, Any] | RepoPolicy | None" = None, *,
                  protect: Iterable[str] = ()) -> Resolver:
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
            raise ValueError(f"default tier {default!r} is not one of the tiers "
                             f"({', '.join(by_name) or 'none configured'})")
        dflt = tier_policy(by_name[default], protect=prot, label=f"tier:{default} (default)")
    else:
        dflt = tier_policy(default, protect=prot)

    def resolve(repo: str) -> RepoPolicy | None:
        for pats, pol in compiled:
            if match_any_path(pats, repo) is not None:
                return pol
        return dflt
    return _cached(resolve)


# --------------------------------------------------------------------------- decisions


@dataclass(slots=True)
class TagDecision:
    repository: str
    tag: str
    digest: str
    action: Action
    reason: str
    rule: str                              # policy label ("gc", "tier:temp", "none")
    age_days: float | None
    age_source: str | None                 # push:filesystem | push:s3 | created:config | created:annotation
    bytes_freed: int = 0                   # on the first (sorted) deleted tag of a digest only
    in_use: tuple[str, ...] = ()           # Kubernetes sources when kept because in use
    overridden: str | None = None          # the rule's delete reason a keep overrode

    @property
    def expired_in_use(self) -> bool:
        return self.action == KEEP and bool(self.in_use) and self.overridden is not None


@dataclass(slots=True)
class ManifestDecision:
    repository: str
    digest: str
    action: Action
    reason: str
    tags: tuple[str, ...]
    kind: str
    bytes_freed: int = 0                   # manifest bytes + blobs only it frees (exact, no double count)
    in_use: tuple[str, ...] = ()


class CapBreach(NamedTuple):
    scope: str          # repository name or "<registry>"
    deleted: int
    total: int

    @property
    def fraction(self) -> float:
        return self.deleted / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.scope}: {self.deleted}/{self.total} tags ({self.fraction:.0%})"


@dataclass
class Plan:
    registry: str
    now: datetime
    tags: list[TagDecision] = field(default_factory=list)
    manifests: list[ManifestDecision] = field(default_factory=list)
    repositories_to_remove: list[str] = field(default_factory=list)
    cap_tripped: list[CapBreach] = field(default_factory=list)
    cap_exempt: list[CapBreach] = field(default_factory=list)       # over the fraction, exempt (ttl)
    kube_protection: bool = False
    max_delete_fraction: float = 0.5
    untagged_known: bool = False
    push_time_source: str = "none"
    policies: dict[str, str] = field(default_factory=dict)          # repo -> rule label
    bytes_freed: int = 0
    bytes_freed_by_repository: dict[str, int] = field(default_factory=dict)
    delete_order: list[tuple[str, str]] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ queries

    def manifests_to_delete(self) -> list[tuple[str, str]]:
        """(repository, digest) in a safe order: per repository, signatures and referrers
        before their subject and every index before its children, so a run stopped half-way
        leaves no index pointing at a deleted child and no signature without its subject."""
        return list(self.delete_order)

    def deleted_tags(self) -> list[TagDecision]:
        return [t for t in self.tags if t.action == DELETE]

    def kept_tags(self) -> list[TagDecision]:
        return [t for t in self.tags if t.action == KEEP]

    def expired_in_use(self) -> list[TagDecision]:
        """Tags a rule would delete that Kubernetes keeps ("expired but in use")."""
        return [t for t in self.tags if t.expired_in_use]

    def deleted_manifests(self) -> list[ManifestDecision]:
        return [m for m in self.manifests if m.action == DELETE]

    @property
    def cap_ok(self) -> bool:
        return not self.cap_tripped

    def repository_rows(self) -> list[dict]:
        rows: dict[str, dict] = {}
        for repo, rule in self.policies.items():
            rows[repo] = {"repository": repo, "rule": rule, "tags": 0, "kept": 0, "deleted": 0,
                          "in_use": 0, "manifests_deleted": 0,
                          "bytes_freed": self.bytes_freed_by_repository.get(repo, 0),
                          "remove_repository": repo in self._removed}
        for t in self.tags:
            row = rows[t.repository]
            row["tags"] += 1
            row["deleted" if t.action == DELETE else "kept"] += 1
            if t.in_use and t.action == KEEP:
                row["in_use"] += 1
        for m in self.manifests:
            if m.action == DELETE:
                rows[m.repository]["manifests_deleted"] += 1
        return [rows[k] for k in sorted(rows)]

    @property
    def _removed(self) -> set[str]:
        return set(self.repositories_to_remove)

    def summary(self) -> dict:
        deleted = sum(1 for t in self.tags if t.action == DELETE)
        return {
            "registry": self.registry,
            "now": self.now.isoformat(),
            "tags_total": len(self.tags),
            "tags_kept": len(self.tags) - deleted,
            "tags_deleted": deleted,
            "tags_in_use": sum(1 for t in self.tags if t.action == KEEP and t.in_use),
            "expired_in_use": sum(1 for t in self.tags if t.expired_in_use),
            "manifests_deleted": sum(1 for m in self.manifests if m.action == DELETE),
            "bytes_freed": self.bytes_freed,
            "repositories": len(self.policies),
            "repositories_to_remove": list(self.repositories_to_remove),
            "cap_tripped": [str(c) for c in self.cap_tripped],
            "cap_exempt": [str(c) for c in self.cap_exempt],
            "max_delete_fraction": self.max_delete_fraction,
            "kube_protection": self.kube_protection,
            "untagged_known": self.untagged_known,
            "push_time_source": self.push_time_source,
            "per_repository": self.repository_rows(),
        }

    TAG_COLUMNS = ["repository", "tag", "digest", "action", "reason", "rule", "age_days",
                   "age_source", "bytes_freed", "in_use", "overridden"]

    def tag_rows(self) -> list[dict]:
        """One dict per tag (columns TAG_COLUMNS), for the CSV report."""
        out = []
        for t in self.tags:
            d = asdict(t)
            d["in_use"] = "; ".join(t.in_use)
            d["overridden"] = t.overridden or ""
            out.append(d)
        return out

    def manifest_rows(self) -> list[dict]:
        out = []
        for m in self.manifests:
            d = asdict(m)
            d["tags"] = ",".join(m.tags)
            d["in_use"] = "; ".join(m.in_use)
            out.append(d)
        return out


# --------------------------------------------------------------------------- planning


def _is_real(m: ManifestInfo | None) -> bool:
    """The inventory records referenced-but-missing manifests as empty placeholders."""
    return m is not None and bool(m.media_type)


def _fmt_age(td: timedelta) -> str:
    return format_duration(td)


@dataclass(slots=True)
class _RepoResult:
    tags: list[TagDecision]
    manifests: list[ManifestDecision]
    deleted: set[str]
    kept_real: set[str]
    order: list[str]
    remove: bool


class _RepoPlanner:
    def __init__(self, r: RepoInventory, pol: RepoPolicy | None, in_use: InUse | None,
                 now: datetime, push_src: str, untagged_known: bool,
                 untagged_grace: timedelta = timedelta(0)):
        self.untagged_grace = untagged_grace
        self.r = r
        self.pol = pol
        self.in_use = in_use
        self.now = now
        self.push_label = f"push:{push_src}" if push_src and push_src != "none" else "push"
        self.untagged_known = untagged_known
        self.rule = pol.name if pol else NO_POLICY
        self.present = {d for d, m in r.manifests.items() if _is_real(m)}
        self.by_digest = r.tags_by_digest()
        self.subject_of: dict[str, tuple[str, str]] = {}       # tag -> (subject, kind)
        self.sigs_of: dict[str, list[str]] = {}                # subject -> tags
        for t in r.tags:
            s = tag_subject(t)
            if s:
                self.subject_of[t] = s
                self.sigs_of.setdefault(s[0], []).append(t)
        self.referrers_of: dict[str, list[str]] = {}           # subject -> referrer digests
        for d in self.present:
            s = r.manifests[d].subject
            if s:
                self.referrers_of.setdefault(s, []).append(d)
        self.kept: dict[str, tuple[str, str | None]] = {}     # digest -> (reason, via tag)
        self.queue: deque[str] = deque()
        self.verdict: dict[str, tuple[str, str]] = {}          # tag -> (keep|delete|follow, reason)
        self.ages: dict[str, tuple[float | None, str | None]] = {}
        self.tag_in_use: dict[str, tuple[str, ...]] = {}
        self.dig_in_use: dict[str, tuple[str, ...]] = {}

    # ---------------------------------------------------------------- helpers

    def keep(self, digest: str, reason: str, tag: str | None = None) -> None:
        if digest not in self.kept:
            self.kept[digest] = (reason, tag)
            self.queue.append(digest)

    def _age(self, tag: str, digest: str) -> tuple[datetime | None, str | None]:
        t = self.r.push_times.get(tag)
        if t is not None:
            return t, self.push_label
        m = self.r.manifests.get(digest)
        if m is not None and m.created is not None:
            return m.created, f"created:{m.created_source}" if m.created_source else "created"
        return None, None

    # ---------------------------------------------------------------- rules

    def rule_verdicts(self) -> None:
        pol, r = self.pol, self.r
        times: dict[str, datetime | None] = {}
        newest: dict[str, datetime] = {}                      # digest -> newest tag time (ranking)
        for t, d in r.tags.items():
            when, src = self._age(t, d)
            times[t] = when
            self.ages[t] = ((self.now - when) / timedelta(days=1) if when else None, src)
            if when is not None and t not in self.subject_of:
                if d not in newest or when > newest[d]:
                    newest[d] = when
        rank: dict[str, int] = {}
        if pol and pol.keep_last is not None and pol.ttl is None and not pol.keep_forever:
            order = sorted(newest, key=lambda d: (-newest[d].timestamp(), d))
            rank = {d: i for i, d in enumerate(order)}

        for t, d in r.tags.items():
            if pol is None:
                self.verdict[t] = (KEEP, "no policy for this repository")
                continue
            if pol.keep_forever:
                self.verdict[t] = (KEEP, "keep forever")
                continue
            pat = match_any_tag(pol.protect, t) if pol.protect else None
            if pat is not None:
                self.verdict[t] = (KEEP, f"protected tag pattern '{pat}'")
                continue
            sub = self.subject_of.get(t)
            if sub is not None:
                if sub[0] in self.present:
                    self.verdict[t] = ("follow", f"{sub[1]} of {short(sub[0])}")
                elif self.untagged_known:
                    self.verdict[t] = (DELETE, "dangling signature")
                else:
                    self.verdict[t] = (KEEP, "signature subject not among tags "
                                             "(untagged manifests not visible without storage access)")
                continue
            when = times[t]
            age = None if when is None else self.now - when
            if pol.ttl is not None:
                if age is None:
                    self.verdict[t] = (KEEP, "age unknown")
                elif age > pol.ttl:
                    self.verdict[t] = (DELETE, f"expired: older than ttl {_fmt_age(pol.ttl)}")
                else:
                    self.verdict[t] = (KEEP, f"younger than ttl {_fmt_age(pol.ttl)}")
                continue
            if pol.keep_last is None and pol.max_age is None:
                self.verdict[t] = (KEEP, "no rule")
                continue
            if age is None:
                self.verdict[t] = (KEEP, "age unknown")
                continue
            if pol.keep_last is not None and rank.get(d, pol.keep_last) < pol.keep_last:
                self.verdict[t] = (KEEP, f"among newest {pol.keep_last}")
            elif pol.max_age is not None and age <= pol.max_age:
                self.verdict[t] = (KEEP, f"younger than {_fmt_age(pol.max_age)}")
            elif pol.max_age is not None:
                beyond = f", beyond newest {pol.keep_last}" if pol.keep_last else ""
                self.verdict[t] = (DELETE, f"older than {_fmt_age(pol.max_age)}{beyond}")
            else:
                self.verdict[t] = (DELETE, f"beyond newest {pol.keep_last}")

    # ---------------------------------------------------------------- fixpoint

    def seed(self) -> None:
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
        elif not pol.delete_untagged:
            for d in r.untagged:
                m = r.manifests.get(d)
                if _is_real(m) and not (m.subject and m.subject in self.present):
                    self.keep(d, "untagged (deleteUntagged off)")
        if pol is not None and not pol.keep_forever and self.untagged_grace > timedelta(0):
            # a multi-arch push uploads its children before the index, and a tag is written
            # after its manifest: a recent untagged manifest may be a push in progress
            for d in r.untagged:
                pushed = r.untagged_pushed.get(d)
                if pushed is not None and _is_real(r.manifests.get(d)) and \
                        self.now - pushed < self.untagged_grace:
                    self.keep(d, f"untagged, pushed {_fmt_age(self.now - pushed)} ago (within the "
                                 f"{_fmt_age(self.untagged_grace)} grace period: a push may be in progress)")

    def drain(self) -> None:
        r, present, q = self.r, self.present, self.queue
        while q:
            d = q.popleft()
            m = r.manifests.get(d)
            if m is not None:
                for c in m.children:
                    if c.digest in present:
                        self.keep(c.digest, f"child of kept index {short(d)}")
                if m.subject and m.subject in present:
                    self.keep(m.subject, f"subject of kept referrer {short(d)}")
            for ref in self.referrers_of.get(d, ()):
                self.keep(ref, f"referrer of kept {short(d)}")
            for t in self.sigs_of.get(d, ()):
                self.keep(r.tags[t], f"{self.subject_of[t][1]} of kept {short(d)}", t)
            for t in self.by_digest.get(d, ()):
                s = self.subject_of.get(t)
                if s and s[0] in present:
                    self.keep(s[0], f"subject of kept {s[1]} {t}")

    def protect_in_use(self) -> None:
        """Ask Kubernetes about everything the plan would delete, keep what is in use, and
        let that flow through the graph; repeat until nothing new is kept. Every tag and
        every untagged digest is asked about at most once."""
        if self.in_use is None or self.pol is None or self.pol.keep_forever:
            return
        asked_tags: set[str] = set()
        asked_digests: set[str] = set()
        name = self.r.name
        while True:
            self.drain()
            before = set(self.kept)
            new = False
            for t, d in self.r.tags.items():
                if d in before or t in asked_tags:
                    continue
                asked_tags.add(t)
                src = self.in_use.is_protected(name, t, d)
                if src:
                    self.tag_in_use[t] = tuple(str(s) for s in src)
                    self.keep(d, "in use", t)
                    new = True
            for d in self.present:
                if d in before or d in self.by_digest or d in asked_digests:
                    continue
                asked_digests.add(d)
                src = self.in_use.is_protected(name, None, d)
                if src:
                    self.dig_in_use[d] = tuple(str(s) for s in src)
                    self.keep(d, "in use")
                    new = True
            if not new:
                break
        self.drain()

    # ---------------------------------------------------------------- results

    def run(self) -> _RepoResult:
        self.rule_verdicts()
        self.seed()
        self.drain()
        self.protect_in_use()
        r, kept = self.r, self.kept

        tag_decisions: list[TagDecision] = []
        for t in sorted(r.tags):
            d = r.tags[t]
            action, rule_reason = self.verdict[t]
            age_days, age_src = self.ages[t]
            in_use: tuple[str, ...] = ()
            overridden = rule_reason if action == DELETE else None
            sub = self.subject_of.get(t)
            if d in kept:
                kreason, ktag = kept[d]
                if t in self.tag_in_use:
                    reason, in_use = "in use", self.tag_in_use[t]
                elif action == KEEP:
                    reason = rule_reason
                elif sub and sub[0] in kept:
                    reason = f"{sub[1]} of kept {short(sub[0])}"
                elif ktag is not None and ktag != t:
                    reason = f"shares digest with kept tag {ktag}"
                    in_use = self.tag_in_use.get(ktag, ())
                elif d in self.dig_in_use:
                    reason, in_use = "in use", self.dig_in_use[d]
                else:
                    reason = f"digest kept: {kreason}"
                if action == "follow":
                    overridden = None
                tag_decisions.append(TagDecision(r.name, t, d, KEEP, reason, self.rule,
                                                 _round(age_days), age_src, 0, in_use, overridden))
            else:
                if sub and action == "follow":
                    reason = f"{sub[1]} of deleted {short(sub[0])}"
                else:
                    reason = rule_reason
                tag_decisions.append(TagDecision(r.name, t, d, DELETE, reason, self.rule,
                                                 _round(age_days), age_src))

        deleted = {d for d in self.present if d not in kept}
        untagged = set(r.untagged)
        parents: dict[str, list[str]] = {}
        for d in self.present:
            for c in r.manifests[d].children:
                parents.setdefault(c.digest, []).append(d)

        manifest_decisions: list[ManifestDecision] = []
        for d in sorted(self.present):
            m = r.manifests[d]
            tags = tuple(sorted(self.by_digest.get(d, ())))
            if d in kept:
                kreason, ktag = kept[d]
                src = self.dig_in_use.get(d) or (self.tag_in_use.get(ktag, ()) if ktag else ())
                reason = f"tag {ktag}: {kreason}" if ktag else kreason
                manifest_decisions.append(ManifestDecision(r.name, d, KEEP, reason, tags, m.kind, 0, src))
                continue
            dead_parents = sorted(p for p in parents.get(d, ()) if p in deleted)
            if tags:
                reason = "all tags deleted"
            elif dead_parents:
                reason = f"child of deleted index {short(dead_parents[0])}"
            elif m.subject:
                reason = (f"referrer of deleted {short(m.subject)}" if m.subject in self.present
                          else "dangling referrer")
            elif d in untagged:
                reason = "untagged, unreferenced"
            else:
                reason = "unreferenced"
            manifest_decisions.append(ManifestDecision(r.name, d, DELETE, reason, tags, m.kind))

        # removing the repository from storage also removes what the scan could not read
        # (placeholders, errors): only when everything in it was seen and is deleted
        remove = bool(self.pol and self.pol.ttl is not None and self.pol.delete_repository
                      and r.tags and all(td.action == DELETE for td in tag_decisions)
                      and len(deleted) == len(self.present)
                      and len(self.present) == len(r.manifests) and not r.errors)
        return _RepoResult(tag_decisions, manifest_decisions, deleted,
                           self.present - deleted, self._order(deleted), remove)

    def _order(self, deleted: set[str]) -> list[str]:
        """Topological order over deleted manifests: index -> child, referrer -> subject,
        signature manifest -> subject (the first of each pair is deleted first)."""
        if not deleted:
            return []
        r = self.r
        succ: dict[str, list[str]] = {}
        indeg = dict.fromkeys(deleted, 0)

        def edge(a: str, b: str) -> None:
            if a != b and a in deleted and b in deleted:
                succ.setdefault(a, []).append(b)
                indeg[b] += 1

        for d in deleted:
            m = r.manifests[d]
            for c in m.children:
                edge(d, c.digest)
            if m.subject:
                edge(d, m.subject)
        for t, (s, _kind) in self.subject_of.items():
            edge(r.tags[t], s)
        heap = [d for d, n in indeg.items() if n == 0]
        heapq.heapify(heap)
        out: list[str] = []
        while heap:
            d = heapq.heappop(heap)
            out.append(d)
            for b in succ.get(d, ()):
                indeg[b] -= 1
                if indeg[b] == 0:
                    heapq.heappush(heap, b)
        if len(out) < len(deleted):  # a cycle cannot happen with content addressing; be safe
            seen = set(out)
            out.extend(sorted(d for d in deleted if d not in seen))
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def plan(inventory: Inventory, resolve: Resolver, *, in_use: InUse | None = None,
         now: datetime, max_delete_fraction: float = 0.5,
         exempt_removed_repositories: bool = True,
         exempt_ttl_repositories: bool = True,
         untagged_known: bool | None = None,
         untagged_grace: timedelta = timedelta(hours=1)) -> Plan:
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

    Blast-radius cap: ``cap_tripped`` lists every repository whose deleted tags exceed
    ``max_delete_fraction`` of its tags, and ``<registry>`` when the plan deletes more than that
    fraction of all tags in the inventory. The registry-wide check always applies, and every
    repository's deleted tags count toward it. Two exemptions from the per-repository check:

    - ``exempt_removed_repositories`` (default True): a repository the tier policy removes whole
      (ttl + deleteRepository) is exempt, since going whole is the intent.
    - ``exempt_ttl_repositories`` (default True): a repository governed by a ``ttl`` rule is
      exempt. Under a TTL every tag's fate is its own age against a declared lifetime; that
      most tags of a temp repository expire together (2 of 3 tags, say, while one fresh tag
      stays) is the rule working, not a runaway rule. The per-repository cap exists to catch a
      count/age rule (``keepLast``/``keepDays``/gc ``days``) wiping out one repository; a TTL
      misapplied at scale (a glob that matches too much, a clock or ``created`` that is wrong)
      shows up in the registry-wide fraction, which still applies.

    Repositories an exemption spared that would otherwise have tripped are listed in
    ``Plan.cap_exempt`` (for the report).

    ``untagged_grace``: an untagged manifest pushed (storage revision time) less than this long
    ago is kept, with everything it references: a push may be in progress (children before
    their index, manifest before its tag). Default one hour.

    ``untagged_known``: whether the inventory lists untagged manifests (default: it does when
    push times came from storage). Only then is a signature whose subject is absent deleted as
    dangling.
    """
    if not 0 < max_delete_fraction <= 1:
        raise ValueError(f"max_delete_fraction must be in (0, 1], got {max_delete_fraction}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if untagged_known is None:
        untagged_known = inventory.push_time_source not in ("none", "", None)
    out = Plan(registry=inventory.registry, now=now, kube_protection=in_use is not None,
               max_delete_fraction=max_delete_fraction, untagged_known=untagged_known,
               push_time_source=inventory.push_time_source)

    results: dict[str, _RepoResult] = {}
    pols: dict[str, RepoPolicy | None] = {}
    for name in sorted(inventory.repositories):
        r = inventory.repositories[name]
        pol = pols[name] = resolve(name)
        out.policies[name] = pol.name if pol else NO_POLICY
        res = _RepoPlanner(r, pol, in_use, now, inventory.push_time_source, untagged_known,
                           untagged_grace).run()
        results[name] = res

    # exact reclaim: blobs (and manifests) referenced by no kept manifest anywhere
    kept_blobs: set[str] = set()
    for name, res in results.items():
        mans = inventory.repositories[name].manifests
        for d in res.kept_real:
            kept_blobs.add(d)
            kept_blobs.update(b.digest for b in mans[d].blobs)
    claimed: set[str] = set()
    total = 0
    for name, res in results.items():
        mans = inventory.repositories[name].manifests
        per_manifest: dict[str, int] = {}
        for d in sorted(res.deleted):
            m = mans[d]
            n = 0
            if d not in kept_blobs and d not in claimed:
                claimed.add(d)
                n += m.size
            for b in m.blobs:
                if b.digest not in kept_blobs and b.digest not in claimed:
                    claimed.add(b.digest)
                    n += b.size
            per_manifest[d] = n
        repo_bytes = sum(per_manifest.values())
        out.bytes_freed_by_repository[name] = repo_bytes
        total += repo_bytes
        for md in res.manifests:
            if md.action == DELETE:
                md.bytes_freed = per_manifest[md.digest]
        first_tag: set[str] = set()
        for td in res.tags:
            if td.action == DELETE and td.digest not in first_tag:
                first_tag.add(td.digest)
                td.bytes_freed = per_manifest.get(td.digest, 0)
        out.tags.extend(res.tags)
        out.manifests.extend(res.manifests)
        out.delete_order.extend((name, d) for d in res.order)
        if res.remove:
            out.repositories_to_remove.append(name)
    out.bytes_freed = total

    # blast radius
    all_tags = all_deleted = 0
    for name, res in results.items():
        n = len(res.tags)
        k = sum(1 for t in res.tags if t.action == DELETE)
        all_tags += n
        all_deleted += k
        if not (n and k / n > max_delete_fraction):
            continue
        pol = pols[name]
        if exempt_removed_repositories and res.remove:
            out.cap_exempt.append(CapBreach(name, k, n))
        elif exempt_ttl_repositories and pol is not None and pol.ttl is not None:
            out.cap_exempt.append(CapBreach(name, k, n))
        else:
            out.cap_tripped.append(CapBreach(name, k, n))
    if all_tags and all_deleted / all_tags > max_delete_fraction:
        out.cap_tripped.append(CapBreach(REGISTRY_SCOPE, all_deleted, all_tags))
    return out
