"""Referrers travel with their subjects (OCI 1.1 referrers: signatures, SBOMs, attestations).

Three ways a source holds what refers to an image, and how each is replicated:

``cosign-tag``  ``sha256-<hex>.sig/.att/.sbom`` tags: ordinary tags that follow their subject
                whatever the rule's tag filter says (``scope.select_tags``), copied after it.
``tag-schema``  the ``sha256-<hex>`` fallback index tag (registries without the referrers API):
                a tag too, following its subject; its entries (the referrer manifests) are its
                children, so they are PUT by digest before it. A target with the API indexes
                them on PUT (they carry ``subject``); a target without it reads the copied tag.
``api``         untagged manifests the referrers API lists: found here, per selected subject
                (``plan_referrers``: one GET per subject and per referrer, ``REFERRER_DEPTH``
                levels), compared with what the target lists (one GET per subject that has
                referrers), PUT by digest after their subject with the exact source bytes
                (``copy_referrers``); on a target without the API their descriptors are added
                to the target's ``sha256-<hex>`` index so its clients find them. The source's
                own ``sha256-<hex>`` tags are then not copied as tags (the index on such a
                target is ours to keep: the union of what was there and the source's list).

deleteExtraneous: a referrer is part of its subject. A signature/referrers tag whose subject
stays is never extraneous (``diff.extraneous_tags``); the referrers of an extraneous subject are
deleted with it, before it, through the one delete path (``extraneous_referrers``; they are not
counted by the cap, their subject is).
"""

from dataclasses import dataclass

from ..errors import RegistryError
from ..models import signature_subject
from ..oci import RegistryClient
from ..oci.referrers import Ask, descriptor_dict, fallback_tag, walk_referrers


@dataclass(slots=True)
class ReferrerCopy:
    """One referrer the target lacks (or does not list)."""

    subject: str  # the tagged image it belongs to
    parent: str  # what it refers to: the subject, or a referrer (level 2)
    digest: str
    artifact_type: str
    found_by: str  # "api" | "tag-schema"
    descriptor: dict  # as the source lists it (what the target's fallback index gets)
    level: int = 1


def detect_modes(src: RegistryClient, dst: RegistryClient, scan) -> tuple[str | None, str | None]:
    """(source mode, target mode): asked once per client (one GET each), on the first source
    repository with a tag. (None, None) when there is nothing to ask about."""
    for repo, tags in sorted(scan.src_dig.items()):
        if tags:
            digest = next(iter(sorted(tags.values())))
            rp = scan.plans[repo]
            try:
                return (
                    src.detect_referrers_mode(repo, digest),
                    dst.detect_referrers_mode(rp.target_repo, digest),
                )
            except RegistryError as e:
                rp.errors.append(f"referrers mode unreadable: {e}")
                return None, None
    return src.referrers_mode, dst.referrers_mode


def drop_fallback_tags(selected: dict[str, str], src_mode: str | None, dst_mode: str | None) -> dict:
    """Source ``sha256-<hex>`` index tags are not copied as tags from a registry with the API
    to one without: the target's index is built from the API's list (``copy_referrers``)."""
    if src_mode != "api" or dst_mode != "tag-schema":
        return selected
    return {t: d for t, d in selected.items() if (signature_subject(t) or ("", ""))[1] != "referrers"}


def plan_referrers(
    src: RegistryClient,
    dst: RegistryClient,
    rp,
    selected: dict[str, str],
    dst_tags: list[str],
    modes: tuple[str | None, str | None],
    workers: int,
) -> None:
    """The API-listed referrers of the selected subjects that the target does not list
    (``rp.referrers``; ``rp.referrers_in_sync`` counts the others). Only a source with the API
    has untagged referrers to find: tag-schema and cosign referrers travel as tags."""
    src_mode, dst_mode = modes
    subjects = sorted({d for t, d in selected.items() if not signature_subject(t)})
    if src_mode != "api" or not subjects:
        return
    walk = walk_referrers(src, [(rp.source_repo, s) for s in subjects], workers, on_error="collect")
    rp.unresolved += [(f"referrers of {u.subject[:19]}", u.why()) for u in walk.errors]
    found = walk.found
    if not found:
        return
    listed = set(dst_tags)
    if dst_mode == "tag-schema":
        ask = [p for p in sorted({f.parent for f in found}) if fallback_tag(p) in listed]
    else:
        ask = sorted({f.parent for f in found}) if listed else []
    have: dict[str, set[str]] = {}
    for parent, res, err in dst.map(lambda p: dst.referrers(rp.target_repo, p), ask, workers):
        if err is None and res is not None:  # unreadable: copied again (the index add dedups)
            have[parent] = {d.digest for d in res.descriptors}
    for f in found:
        d = f.descriptor
        if d.digest in have.get(f.parent, ()):
            rp.referrers_in_sync += 1
            continue
        rp.referrers.append(
            ReferrerCopy(
                f.subject, f.parent, d.digest, d.artifact_type or "", f.found_by, descriptor_dict(d), f.level
            )
        )
    rp.fallback_update = dst_mode == "tag-schema"


def extraneous_referrers(
    dst: RegistryClient, rp, dst_tags: list[str], dst_mode: str | None, workers: int
) -> list[tuple[str, str, str]]:
    """(subject, parent, referrer digest) of every referrer on the target of the digests the
    plan deletes there: deleted with (before) their subject. A read failure raises."""
    digests = sorted({d for _, d in rp.extraneous})
    listed = set(dst_tags)
    if dst_mode == "tag-schema":
        ask: Ask | None = lambda _r, p, _d: fallback_tag(p) in listed  # noqa: E731
    elif dst_mode == "api":
        ask = None
    else:
        return []
    walk = walk_referrers(dst, [(rp.target_repo, d) for d in digests], workers, ask=ask)
    return [
        (f.subject, f.parent, f.descriptor.digest) for f in walk.found if f.descriptor.digest not in digests
    ]


def tagged_referrers(tag: str, m) -> list[tuple[str, str, str, str]]:
    """(subject, digest, artifact type, found by) of the referrers a copied signature or
    referrers tag carried (the report's list)."""
    sig = signature_subject(tag)
    if not sig:
        return []
    subject, kind = sig
    if kind != "referrers":
        return [(subject, m.digest, m.artifact_type or kind, "cosign-tag")]
    return [(subject, c.digest, c.artifact_type or "", "tag-schema") for c in m.children]


def referrer_jobs(plans: list) -> list[tuple]:
    """One copy job per (repository plan, subject): its referrers, parents first (one job
    owns the subject's fallback index on the target, so two updates never race)."""
    jobs = []
    for p in plans:
        if p.errors or not p.referrers:
            continue
        by_subject: dict[str, list[ReferrerCopy]] = {}
        for r in p.referrers:
            by_subject.setdefault(r.subject, []).append(r)
        jobs += [(p, s, sorted(items, key=lambda r: (r.level, r.digest))) for s, items in by_subject.items()]
    return jobs


def verify_referrers(dst: RegistryClient, plans: list, results: list, concurrency: int = 8) -> list:
    """Every referrer copied this run is listed by the target's discovery (the API, else its
    ``sha256-<hex>`` index): one read per parent. A referrer not listed becomes a failure."""
    by_target = {r.target_repo: r for r in results}
    want: dict[tuple[str, str], set[str]] = {}
    for p in plans:
        res = by_target.get(p.target_repo)
        if res is None:
            continue
        copied = {d for _, d, _, _ in res.referrers_copied}
        for r in p.referrers:
            if r.digest in copied:
                want.setdefault((p.target_repo, r.parent), set()).add(r.digest)
    problems = []
    jobs = sorted(want)
    for (repo, parent), got, err in dst.map(lambda j: dst.referrers(j[0], j[1]), jobs, concurrency):
        listed = {d.digest for d in got.descriptors} if got is not None else set()
        for digest in sorted(want[(repo, parent)] - listed):
            why = f"read-back failed: {err}" if err is not None else "not listed by the target's discovery"
            res = by_target[repo]
            res.referrers_copied = [x for x in res.referrers_copied if x[1] != digest]
            res.referrers_failed.append((digest, f"referrer of {parent[:19]}: {why}"))
            problems.append((repo, digest, why))
    return problems
