"""The one referrer model: every referrer of a repository linked to its subject, with how it
was discovered and its artifact type (``RepoInventory.referrers``).

Four ways to find one, in this order (the first that finds a referrer names it):

``api``            the registry's referrers API (``GET /v2/<name>/referrers/<digest>``): the
                   scan asks it once per image / index digest it holds, in API mode only
                   (regkeeper/inventory.py; the client detects the mode, oci/referrers.py)
``tag-schema``     an entry of the ``sha256-<hex>`` fallback index (registries without the API)
``cosign-tag``     a manifest tagged ``sha256-<hex>.sig / .att / .sbom`` (cosign's default)
``subject-field``  any other manifest with a ``subject`` (untagged, or tagged e.g. ``sbom-1.0``)

The fallback index itself is bookkeeping, not a referrer: ``RepoInventory.fallback_indexes``.
The policy (regkeeper/policy/graph.py) reads the same edges from the manifests and tags: a
referrer lives and dies with its subject.
"""

from collections.abc import Callable, Mapping, Sequence

from .models import Descriptor, ManifestInfo, Referrer, RepoInventory, signature_subject
from .oci import RegistryClient
from .oci.referrers import Referrers, walk_referrers

# cosign's artifact types (what cosign's OCI 1.1 mode writes as artifactType)
COSIGN_TYPES = {
    "sig": "application/vnd.dev.cosign.artifact.sig.v1+json",
    "att": "application/vnd.dev.cosign.artifact.att.v1+json",
    "sbom": "application/vnd.dev.cosign.artifact.sbom.v1+json",
}
# artifact types that never have referrers of their own in practice: the scan does not ask the
# API about them (a signature of a signature is not followed; an SBOM's signature is)
LEAF_TYPES = frozenset({COSIGN_TYPES["sig"], "application/vnd.cncf.notary.signature"})


def artifact_type(m: ManifestInfo | None, desc: Descriptor | None = None) -> str:
    """The OCI rule: the descriptor's / manifest's ``artifactType``, else the config's media
    type (what the referrers API reports)."""
    if desc is not None and desc.artifact_type:
        return desc.artifact_type
    if m is not None and m.artifact_type:
        return m.artifact_type
    if m is not None and m.blobs and m.config_digest:
        return m.blobs[0].media_type
    return ""


def link_referrers(r: RepoInventory, api: Mapping[str, Sequence[Descriptor]] | None = None) -> None:
    """Fill ``r.referrers`` and ``r.fallback_indexes`` from what the scan found: ``api``
    (subject -> descriptors from the referrers API), the fallback index tags, cosign tags and
    ``subject`` fields."""
    found: dict[tuple[str, str], Referrer] = {}
    tags_on = r.tags_by_digest()

    def add(subject: str, digest: str, how: str, atype: str) -> None:
        if (subject, digest) not in found and digest != subject:
            tags = tuple(sorted(tags_on.get(digest, ())))
            found[(subject, digest)] = Referrer(digest, subject, atype, how, tags)

    for subject, descs in (api or {}).items():
        for d in descs:
            add(subject, d.digest, "api", artifact_type(r.manifests.get(d.digest), d))
    for tag, digest in sorted(r.tags.items()):
        sub = signature_subject(tag)
        m = r.manifests.get(digest)
        if sub is None or m is None:
            continue
        if sub[1] == "referrers" and m.kind == "index":
            r.fallback_indexes[sub[0]] = digest
            for c in m.children:
                add(sub[0], c.digest, "tag-schema", artifact_type(r.manifests.get(c.digest), c))
        elif sub[1] != "referrers":
            add(sub[0], digest, "cosign-tag", m.artifact_type or COSIGN_TYPES[sub[1]])
    for digest, m in sorted(r.manifests.items()):
        if m.subject:
            add(m.subject, digest, "subject-field", artifact_type(m))
    r.referrers = {}
    for (subject, _), ref in sorted(found.items()):
        r.referrers.setdefault(subject, []).append(ref)


def api_subjects(r: RepoInventory) -> list[str]:
    """The digests the scan asks the referrers API about: every image / index it holds that is
    not itself a referrer or a fallback index (their referrers are asked for separately, see
    ``LEAF_TYPES``)."""
    on_tags = {d for t, d in r.tags.items() if signature_subject(t)}
    return sorted(d for d, m in r.manifests.items() if m.media_type and not m.subject and d not in on_tags)


ApiReferrers = dict[str, dict[str, tuple[Descriptor, ...]]]  # repo -> subject -> descriptors


def may_have_referrers(_repo: str, _parent: str, desc: Descriptor | None) -> bool:
    """The scan's ``ask``: a signature (``LEAF_TYPES``) is not asked about its referrers."""
    return desc is None or desc.artifact_type not in LEAF_TYPES


def discover_api(
    client: RegistryClient,
    repos: Mapping[str, RepoInventory],
    workers: int,
    fetch_missing: Callable[[list[tuple[str, str]]], None],
    read_errors: list | None = None,
) -> tuple[ApiReferrers, int]:
    """API mode: the referrers of every subject the scan holds (``api_subjects``), one request
    per unique (repository, digest), then of the referrers found that may have their own (not
    signatures: ``LEAF_TYPES``), ``REFERRER_DEPTH`` levels (the one walk, ``walk_referrers``,
    as replicate and backup follow them). Referrers the scan had not seen (untagged) are
    fetched into the inventory by ``fetch_missing``, after the walk. Without the API
    (tag-schema mode) this costs one request per client, the detection. Returns (repo ->
    subject -> descriptors, the number of referrers requests). A failed call raises (gc /
    expire plan nothing on a half-known registry) unless ``read_errors`` collects it (backup,
    as for the scan's other reads); a 404 is no referrers."""
    todo = [(repo, d) for repo, r in repos.items() for d in api_subjects(r)]
    if not todo:
        return {}, 0
    calls = 0
    answered: dict[tuple[str, str], Referrers] = {}
    if client.referrers_mode is None:
        calls += 1
        first = client.probe_referrers(*todo[0])
        if first is not None:
            answered[todo[0]] = first
    if client.referrers_mode != "api":
        return {}, calls
    walk = walk_referrers(
        client,
        sorted(set(todo)),
        workers,
        ask=may_have_referrers,
        on_error="raise" if read_errors is None else "collect",
        missing_ok=True,
        answered=answered,
    )
    if read_errors is not None:
        read_errors.extend((u.repo, u.parent, u.error) for u in walk.errors)  # named, the rest goes on
    fetch_missing(
        sorted(
            {
                (repo, d.digest)
                for (repo, _), descs in walk.listed.items()
                for d in descs
                if d.digest not in repos[repo].manifests
            }
        )
    )
    out: ApiReferrers = {}
    for (repo, subject), descs in walk.listed.items():
        out.setdefault(repo, {})[subject] = descs
    return out, calls + walk.requests
