"""Decisions: the plan a gc / expire run would carry out, and how it reads.

:class:`TagDecision` and :class:`ManifestDecision` each name the action, the rule and the reason
that decided it (and the Kubernetes sources when kept because in use). :class:`Plan` gathers
them for a registry with the exact bytes a run would free, the safe delete order, the
repositories a tier removes whole and the blast-radius breaches; its rows and summary feed the
reports (CSV / HTML / JSON).
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

from .cap import CapBreach

Action = Literal["keep", "delete"]
KEEP: Action = "keep"
DELETE: Action = "delete"


@dataclass(slots=True)
class TagDecision:
    repository: str
    tag: str
    digest: str
    action: Action
    reason: str
    rule: str  # policy label ("gc", "tier:temp", "none"), or "tier:apps/<rule>" (ordered rules)
    age_days: float | None
    age_source: str | None  # push:filesystem | push:s3 | created:config | created:annotation
    bytes_freed: int = 0  # on the first (sorted) deleted tag of a digest only
    in_use: tuple[str, ...] = ()  # Kubernetes sources when kept because in use
    overridden: str | None = None  # the rule's delete reason a keep overrode

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
    bytes_freed: int = 0  # manifest bytes + blobs only it frees (exact, no double count)
    in_use: tuple[str, ...] = ()
    rule: str = ""  # the policy label, or policy/rule of the ordered rule that decided it


@dataclass
class Plan:
    """What a gc / expire run would do on one registry (see ``planner.plan``)."""

    registry: str
    now: datetime
    tags: list[TagDecision] = field(default_factory=list)
    manifests: list[ManifestDecision] = field(default_factory=list)
    repositories_to_remove: list[str] = field(default_factory=list)
    cap_tripped: list[CapBreach] = field(default_factory=list)
    cap_exempt: list[CapBreach] = field(default_factory=list)  # over the fraction, exempt (ttl)
    kube_protection: bool = False
    max_delete_fraction: float = 0.5
    untagged_known: bool = False
    push_time_source: str = "none"
    policies: dict[str, str] = field(default_factory=dict)  # repo -> rule label
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
            rows[repo] = {
                "repository": repo,
                "rule": rule,
                "tags": 0,
                "kept": 0,
                "deleted": 0,
                "in_use": 0,
                "manifests_deleted": 0,
                "bytes_freed": self.bytes_freed_by_repository.get(repo, 0),
                "remove_repository": repo in self._removed,
            }
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

    TAG_COLUMNS = [
        "repository",
        "tag",
        "digest",
        "action",
        "reason",
        "rule",
        "age_days",
        "age_source",
        "bytes_freed",
        "in_use",
        "overridden",
    ]

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
