"""What a backup records about referrers (OCI 1.1: signatures, SBOMs, attestations).

Per repository, ``referrers``: subject digest -> the referrers found for it, each
``{digest, parent, artifact_type, media_type, found_by, descriptor}``; ``found_by``:

``api``         untagged manifests the registry's referrers API lists (``client.referrers``,
                ``REFERRER_DEPTH`` levels): their manifests (and closure, configs) are added to
                the snapshot like any other, and restore PUTs them by digest after their subject
                (adding them to the ``sha256-<hex>`` index on a registry without the API);
``tag-schema``  the entries of a ``sha256-<hex>`` fallback index tag, and
``cosign-tag``  ``sha256-<hex>.sig/.att/.sbom`` tags: both are tags of the snapshot already
                (their manifests in the tags' closure) and are restored as tags; recorded here
                so the reports list every subject's referrers.

Requests: one per tagged subject on a registry with the API (plus one per referrer, for
referrers of referrers); on one without it none beyond the scan (each fallback index is read by
the digest its tag points at: the disk cache answers).
Snapshots of ``regkeeper-backup/1`` have no ``referrers`` field: restore treats it as empty.
"""

from ..models import signature_subject
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..oci.referrers import Referrers, Walk, descriptor_dict, fallback_tag, walk_referrers


def describe_manifest(m: Manifest) -> dict:
    """A snapshot description of a manifest read by digest (as ``batch._describe``)."""
    return {
        "media_type": m.media_type,
        "size": m.size,
        "kind": m.kind,
        "children": [c.digest for c in m.children],
        "config": (
            {"digest": m.config.digest, "size": m.config.size, "media_type": m.config.media_type}
            if m.config is not None
            else None
        ),
        "layers": [{"digest": b.digest, "size": b.size, "media_type": b.media_type} for b in m.layers],
        "subject": m.subject.digest if m.subject else None,
    }


def record_referrers(
    client: RegistryClient,
    name: str,
    rec: dict,
    manifests: dict[str, dict],
    need: tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]],
    errors: list[str],
    workers: int,
    config_max: int,
) -> None:
    """Fill ``rec["referrers"]`` of one repository (``rec["tags"]`` read already) and add the
    API-listed referrers' manifests to ``manifests`` / ``rec["manifests"]`` and to what the
    target must hold (``need``: manifests, configs up to ``config_max`` bytes).
    A read failure is noted in ``errors`` (the rest of the backup goes on)."""
    tags: dict[str, str] = rec["tags"]
    subjects = sorted({d for t, d in tags.items() if not signature_subject(t)})
    out: dict[str, list[dict]] = {}
    for t, d in sorted(tags.items()):
        sig = signature_subject(t)
        if sig and sig[1] != "referrers" and sig[0] in subjects:
            out.setdefault(sig[0], []).append(_entry(d, sig[0], sig[1], "", "cosign-tag", None))
    if subjects:
        mode = client.detect_referrers_mode(name, subjects[0])
        items = [(name, s) for s in subjects]
        if mode == "api":
            walk = walk_referrers(client, items, workers, on_error="collect")
            errors += [f"{name}: {u.why()}" for u in walk.errors]
        else:
            walk = _fallback_walk(client, tags, items, workers)
            errors += [f"{name}: {u.why('referrers index')}" for u in walk.errors]
        for f in walk.found:
            desc, dd = f.descriptor, descriptor_dict(f.descriptor)
            entry = _entry(desc.digest, f.parent, desc.artifact_type or "", desc.media_type, f.found_by, dd)
            out.setdefault(f.subject, []).append(entry)
        api = [f.descriptor.digest for f in walk.found if f.found_by == "api"]
        _add_manifests(client, name, rec, api, manifests, need, errors, config_max)
    rec["referrers"] = {s: out[s] for s in sorted(out)}


def _fallback_walk(
    client: RegistryClient, tags: dict[str, str], items: list[tuple[str, str]], workers: int
) -> Walk:
    """A registry without the API: the one walk over each subject's ``sha256-<hex>`` index,
    read by the digest its tag points at (the scan just read it: the disk cache answers);
    a parent without that tag is not read."""

    def read(repo: str, parent: str) -> Referrers:
        m = client.get_manifest(repo, tags[fallback_tag(parent)])
        return Referrers(parent, "tag-schema", tuple(m.children), m)

    return walk_referrers(
        client, items, workers, ask=lambda _r, p, _d: fallback_tag(p) in tags, on_error="collect", read=read
    )


def _entry(digest, parent, artifact_type, media_type, found_by, descriptor) -> dict:
    return {
        "digest": digest,
        "parent": parent,
        "artifact_type": artifact_type,
        "media_type": media_type,
        "found_by": found_by,
        "descriptor": descriptor,
    }


def _add_manifests(
    client: RegistryClient,
    name: str,
    rec: dict,
    digests: list[str],
    manifests: dict[str, dict],
    need: tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]],
    errors: list[str],
    config_max: int,
) -> None:
    """The referrers' manifests and their closure (an index referrer's children), read by
    digest (the disk cache answers on later runs), described in the snapshot."""
    todo = [d for d in digests if d not in manifests]
    depth = 0
    while todo and depth < 4:
        nxt: list[str] = []
        for d, m, err in client.map(lambda x: client.get_manifest(name, x), todo, client.concurrency):
            if err is not None or m is None:
                errors.append(f"{name}: referrer {d} unreadable, left out: {err}")
                continue
            manifests[d] = describe_manifest(m)
            need[0].setdefault(d, (name, m.size))
            if m.config is not None and m.config.size <= config_max:
                need[1].setdefault(m.config.digest, (name, m.config.size))
            nxt += [c.digest for c in m.children if c.digest not in manifests]
        todo, depth = nxt, depth + 1
    closure = set(digests)
    for d in digests:  # an index referrer's children belong to the repository too
        closure.update((manifests.get(d) or {}).get("children") or [])
    rec["manifests"] = sorted(set(rec["manifests"]) | {d for d in closure if d in manifests})


def drop_missing(rec: dict, manifests: dict[str, dict]) -> None:
    """Forget API-found referrers whose manifest is not in the snapshot (unreadable or gone
    mid-run): restore would have nothing to PUT."""
    for subject, entries in list((rec.get("referrers") or {}).items()):
        kept = [e for e in entries if e["found_by"] != "api" or e["digest"] in manifests]
        rec["referrers"][subject] = kept
