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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from .errors import NotFoundError
from .models import Descriptor, ManifestInfo, Referrer, RepoInventory, signature_subject
from .oci.referrers import REFERRER_DEPTH

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


class _Client(Protocol):
    @property
    def referrers_mode(self) -> str | None: ...

    def probe_referrers(self, repo: str, subject: str) -> Any: ...

    def referrers(self, repo: str, subject: str) -> Any: ...

    def map(self, fn: Callable, items: Iterable, limit: int | None = None) -> list: ...


ApiReferrers = dict[str, dict[str, tuple[Descriptor, ...]]]  # repo -> subject -> descriptors


def discover_api(
    client: _Client,
    repos: Mapping[str, RepoInventory],
    workers: int,
    fetch_missing: Callable[[list[tuple[str, str]]], None],
    read_errors: list | None = None,
) -> tuple[ApiReferrers, int]:
    """API mode: the referrers of every subject the scan holds (``api_subjects``), one request
    per unique (repository, digest), then of the referrers found that may have their own (not
    signatures: ``LEAF_TYPES``), ``REFERRER_DEPTH`` levels (as replicate and backup follow them). Referrers the scan had not seen (untagged)
    are fetched into the inventory by ``fetch_missing``. Without the API (tag-schema mode) this
    costs one request per client, the detection. Returns (repo -> subject -> descriptors, the
    number of referrers requests). A failed call raises (gc / expire plan nothing on a half-known
    registry) unless ``read_errors`` collects it (backup, as for the scan's other reads)."""
    todo = [(repo, d) for repo, r in repos.items() for d in api_subjects(r)]
    out: ApiReferrers = {}
    if not todo:
        return out, 0
    calls = 0
    if client.referrers_mode is None:
        calls += 1
        first = client.probe_referrers(*todo[0])
        if first is not None:
            out.setdefault(todo[0][0], {})[todo[0][1]] = tuple(first.descriptors)
    if client.referrers_mode != "api":
        return out, calls
    asked = {(repo, s) for repo, subs in out.items() for s in subs}
    for _level in range(REFERRER_DEPTH):  # as deep as replication and backup carry them
        level = sorted(set(todo))
        ask = [it for it in level if it not in asked]
        if not level:
            break
        asked.update(ask)
        calls += len(ask)
        for (repo, subject), res, err in client.map(lambda it: client.referrers(*it), ask, workers):
            if err is not None and not isinstance(err, NotFoundError):
                if read_errors is None:
                    raise err
                read_errors.append((repo, subject, err))  # backup: named, the rest carries on
            out.setdefault(repo, {})[subject] = tuple(res.descriptors) if res is not None else ()
        found = [(repo, d) for (repo, s) in level for d in out.get(repo, {}).get(s, ())]
        fetch_missing(
            sorted({(repo, d.digest) for repo, d in found if d.digest not in repos[repo].manifests})
        )
        todo = [
            (repo, d.digest)
            for repo, d in found
            if d.artifact_type not in LEAF_TYPES and (repo, d.digest) not in asked
        ]
    return out, calls
