"""What a replication plan is: one ``TagCopy`` per source tag to copy, one ``RepoPlan`` per
repository (tags to copy, tags in sync, extraneous target tags and why some are kept), and the
``ReplicationPlan`` of one (rule, target) with its totals and report rows.

Built by ``plan.py``, executed by ``execute.py``; pure data, no registry calls.
"""

from dataclasses import dataclass, field


@dataclass(slots=True)
class TagCopy:
    """One source tag that is missing or different on the target."""

    tag: str
    digest: str  # source digest (what the target must end up with)
    target_digest: str | None = None  # what the target has now (None: missing)
    media_type: str = ""

    @property
    def reason(self) -> str:
        return "missing" if self.target_digest is None else "different"


@dataclass(slots=True)
class RepoPlan:
    source_repo: str
    target_repo: str
    to_copy: list[TagCopy] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    extraneous: list[tuple[str, str]] = field(default_factory=list)  # (tag, target digest) to delete
    kept_extraneous: list[tuple[str, str]] = field(default_factory=list)  # (tag, why not deletable)
    scope_tags: int = 0  # target tags inside the rule's scope (cap denominator)
    source_missing: bool = False  # the repository is gone from the source (extraneous only)
    errors: list[str] = field(default_factory=list)  # repository-level: nothing done here
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (source tag, why no digest)
    no_deletes: str | None = None  # why deletes are off in this repository (unknown digests)
    # extraneous target digest -> the digests it references in the target repository (index
    # children, OCI subject, signature tag subject): the delete order (referencing first)
    references: dict[str, list[str]] = field(default_factory=dict)
    # extraneous target digest -> its OCI subject, on a target without the referrers API: a
    # referrer deleted while its subject stays leaves the subject's fallback index
    fallback_subjects: dict[str, str] = field(default_factory=dict)
    # source manifests fetched while planning (tags the target lacks: the copy needs the bytes
    # anyway, so the plan GETs them instead of a HEAD); digest -> Manifest
    prefetched: dict = field(default_factory=dict, repr=False)
    # referrers the source API lists that the target does not (referrers.py: ReferrerCopy)
    referrers: list = field(default_factory=list)
    referrers_in_sync: int = 0  # API-listed referrers the target already lists
    fallback_update: bool = False  # the target has no API: add copied referrers to its index
    # (subject, parent, digest) of target referrers deleted with an extraneous subject
    extraneous_referrers: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def lag(self) -> int:
        """Source tags missing or different on the target (or not comparable this run)."""
        return len(self.to_copy) + len(self.unresolved)

    @property
    def missing(self) -> int:
        return sum(1 for c in self.to_copy if c.target_digest is None)

    @property
    def different(self) -> int:
        return sum(1 for c in self.to_copy if c.target_digest is not None)


@dataclass(slots=True)
class ReplicationPlan:
    rule: str
    source: str
    target: str
    prefix: str
    delete_extraneous: bool
    repositories: list[RepoPlan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # planning problems outside one repo
    stats: dict = field(default_factory=dict)
    source_referrers_mode: str | None = None  # "api" | "tag-schema" (client.referrers_mode)
    target_referrers_mode: str | None = None

    @property
    def referrers(self) -> int:
        """Untagged (API-listed) referrers to copy."""
        return sum(len(r.referrers) for r in self.repositories)

    @property
    def lag(self) -> int:
        return sum(r.lag for r in self.repositories)

    @property
    def to_copy(self) -> int:
        return sum(len(r.to_copy) for r in self.repositories)

    @property
    def in_sync(self) -> int:
        return sum(len(r.in_sync) for r in self.repositories)

    @property
    def extraneous(self) -> int:
        return sum(len(r.extraneous) for r in self.repositories)

    @property
    def scope_tags(self) -> int:
        return sum(r.scope_tags for r in self.repositories)

    def repo(self, source_repo: str) -> RepoPlan | None:
        return next((r for r in self.repositories if r.source_repo == source_repo), None)

    def rows(self) -> list[dict]:
        """One row per tag decision (copy / in-sync / delete), for reports."""
        out = []
        for r in self.repositories:
            for c in r.to_copy:
                out.append(
                    {
                        "repository": r.source_repo,
                        "target_repository": r.target_repo,
                        "tag": c.tag,
                        "action": "copy",
                        "reason": c.reason,
                        "digest": c.digest,
                        "target_digest": c.target_digest or "",
                    }
                )
            for ref in r.referrers:
                out.append(
                    {
                        "repository": r.source_repo,
                        "target_repository": r.target_repo,
                        "tag": f"(referrer of {ref.parent[:19]})",
                        "action": "copy referrer",
                        "reason": f"{ref.artifact_type or 'artifact'}, found by {ref.found_by}",
                        "digest": ref.digest,
                        "target_digest": "",
                    }
                )
            for t, d in r.extraneous:
                out.append(
                    {
                        "repository": r.source_repo,
                        "target_repository": r.target_repo,
                        "tag": t,
                        "action": "delete",
                        "reason": "not on source",
                        "digest": "",
                        "target_digest": d,
                    }
                )
            for t, why in r.kept_extraneous:
                out.append(
                    {
                        "repository": r.source_repo,
                        "target_repository": r.target_repo,
                        "tag": t,
                        "action": "keep",
                        "reason": why,
                        "digest": "",
                        "target_digest": "",
                    }
                )
        return out
