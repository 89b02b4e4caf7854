"""deleteExtraneous: replication's side of the ONE delete path and the ONE cap.

- ``check_delete_cap``: the one cap (``policy.cap.check_cap``) over the plan's numbers
  (extraneous tags of the rule's in-scope target tags), with the rule's own
  ``replication[].maxDeleteFraction``; ``force`` overrides.
- ``extraneous_references``: what each extraneous target digest references in its repository
  (signature tag subjects, OCI ``subject``, index children), read while planning, so the delete
  path can order deletes without a full inventory (referencing manifests first).
- ``delete_extraneous``: the plan's extraneous digests, and the referrers of those digests on
  the target (part of their subject: deleted before it; not counted by the cap), through ``prune.delete.delete_manifests``
  (reference-depth order, 404 = already gone, 405 stops everything, every repository's tags
  re-read just before deleting); ``record_deletes`` writes the outcome per tag into each
  ``RepoResult`` (deleted / already gone / skipped because changed since the plan / failed).

Which tags are extraneous is decided in ``diff.py``.
"""

from collections.abc import Mapping

from ..errors import NotFoundError
from ..oci import RegistryClient
from ..policy.cap import check_cap
from ..policy.graph import manifest_references
from ..prune.delete import DeleteResult, delete_manifests
from ..prune.referrers import drop_fallback_entries
from ..quarantine import Quarantine
from ..util import succeeded
from .plan_model import ReplicationPlan, RepoPlan
from .result import RepoResult

# manifests that can neither list children nor carry an OCI subject: no read needed
_NO_REFERENCES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    }
)


def check_delete_cap(plan: ReplicationPlan, max_fraction: float = 0.5, force: bool = False) -> str | None:
    """None when the plan's deletes are within the rule's cap (or forced), else why they are
    refused. ``max_fraction`` is the rule's ``maxDeleteFraction``."""
    return check_cap(
        plan.extraneous,
        plan.scope_tags,
        max_fraction,
        force,
        what=f"rule {plan.rule} -> target {plan.target} (in-scope target tags)",
        action="deleteExtraneous would delete",
        key=f"maxDeleteFraction of replication rule {plan.rule}",
    )


def extraneous_references(
    dst: RegistryClient,
    repo: str,
    extraneous: list[tuple[str, str]],
    types: Mapping[str, str],
    workers: int = 8,
    subjects: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """digest -> the digests it references in ``repo`` (target), for every extraneous digest
    that references something: subjects named by its signature tags, and, read by digest (the
    disk cache answers), its OCI ``subject`` and index children. Docker image manifests
    (``types``: digest -> media type) are not read. A read failure other than 404 raises: the
    delete order must not guess."""
    tags_on: dict[str, list[str]] = {}
    for tag, digest in extraneous:
        tags_on.setdefault(digest, []).append(tag)
    to_read = [d for d in tags_on if types.get(d) not in _NO_REFERENCES]

    def read(digest: str) -> tuple[list[str], str | None]:
        try:
            m = dst.get_manifest(repo, digest)
        except NotFoundError:  # gone already: the DELETE will say so (404)
            return [], None
        return m.referenced_manifests(), (m.subject.digest if m.subject else None)

    read_back = dict(succeeded(dst.map(read, to_read, workers)))
    out: dict[str, list[str]] = {}
    for digest, tags in tags_on.items():
        children, subject = read_back.get(digest, ([], None))
        if subject is not None and subjects is not None:
            subjects[digest] = subject
        refs = manifest_references(children, subject, tags) - {digest}
        if refs:
            out[digest] = sorted(refs)
    return out


def deletable_plans(plans: list[RepoPlan]) -> list[RepoPlan]:
    """The repository plans whose extraneous tags may be deleted this run."""
    return [p for p in plans if p.extraneous and not p.errors and not p.no_deletes]


def delete_extraneous(
    dst: RegistryClient,
    plans: list[RepoPlan],
    *,
    max_workers: int | None = None,
    quarantine: Quarantine | None = None,
) -> DeleteResult:
    """Delete the extraneous target digests of ``plans`` through the one delete path (the cap
    is checked by the caller first). Every repository's tags are re-read just before deleting:
    DELETE by digest removes every tag on it, so a repository where a tag now points at a
    planned digest is skipped (``DeleteResult.skipped``) and nothing is deleted there. With
    ``quarantine`` (the target's, from the run context) every delete is held first (undoable)."""
    items: list[tuple[str, str]] = []
    references: dict[tuple[str, str], list[str]] = {}
    recheck: dict[str, set[str]] = {}
    for p in deletable_plans(plans):
        items += [(p.target_repo, d) for d in sorted({d for _, d in p.extraneous})]
        references.update({(p.target_repo, d): refs for d, refs in p.references.items()})
        recheck[p.target_repo] = {t for t, _ in p.extraneous}
        # a referrer is part of its subject: deleted with it, before it
        for _subject, parent, d in p.extraneous_referrers:
            if (p.target_repo, d) not in references:
                items.append((p.target_repo, d))
            references.setdefault((p.target_repo, d), []).append(parent)
    if not items:
        return DeleteResult()
    if quarantine is not None:
        quarantine.explain({it: ("deleteExtraneous", "not in the source") for it in items})
    res = delete_manifests(
        dst, items, references=references, max_workers=max_workers, recheck=recheck, quarantine=quarantine
    )
    _unlist_deleted(dst, deletable_plans(plans), res)
    return res


def _unlist_deleted(dst: RegistryClient, plans: list[RepoPlan], res: DeleteResult) -> None:
    """A referrer deleted while its subject stays (a target without the referrers API) leaves
    the subject's fallback index, as gc's repair does: no entry for a deleted manifest remains."""
    gone = set(res.deleted) | set(res.already_gone)
    drops: dict[tuple[str, str], set[str]] = {}
    for p in plans:
        for digest, subject in p.fallback_subjects.items():
            if (p.target_repo, digest) in gone and (p.target_repo, subject) not in gone:
                drops.setdefault((p.target_repo, subject), set()).add(digest)
    for (repo, subject), digests in sorted(drops.items()):
        drop_fallback_entries(dst, repo, subject, frozenset(digests), res)


def not_attempted(plans: list[RepoPlan], why: str) -> DeleteResult:
    """The outcome of deletes never sent (an earlier batch found deletes disabled)."""
    return DeleteResult(
        failed=[
            (p.target_repo, d, f"not attempted: {why}")
            for p in deletable_plans(plans)
            for d in sorted({d for _, d in p.extraneous})
        ]
    )


def record_deletes(plans: list[RepoPlan], results: Mapping[str, RepoResult], res: DeleteResult) -> None:
    """Write the outcome of ``delete_extraneous`` per tag into the results (source repo ->
    ``RepoResult``): deleted, already gone (404), skipped (the repository changed since the
    plan, with why) or failed (with why)."""
    skipped = dict(res.skipped)
    deleted, gone = set(res.deleted), set(res.already_gone)
    failed = {(repo, d): why for repo, d, why in res.failed}
    for p in deletable_plans(plans):
        r = results[p.source_repo]
        for subject, _parent, digest in p.extraneous_referrers:
            key = (p.target_repo, digest)
            if key in deleted or key in gone:
                r.referrers_deleted.append((subject, digest))
            elif p.target_repo not in skipped:
                why = failed.get(key, "not attempted")
                r.delete_failed.append((f"(referrer {digest[:19]} of {subject[:19]})", why))
        for tag, digest in p.extraneous:
            key = (p.target_repo, digest)
            if p.target_repo in skipped:
                r.delete_skipped.append((tag, skipped[p.target_repo]))
            elif key in deleted:
                r.deleted.append((tag, digest))
            elif key in gone:
                r.already_gone.append((tag, digest))
            else:
                r.delete_failed.append((tag, failed.get(key, "not attempted")))
