"""The reclaim preview: the exact bytes each planned delete frees, gathered from every
repository's decisions (:class:`RepoResult`) into the :class:`Plan`. A blob counts once, and only
when no kept manifest anywhere in the inventory references it (a registry's storage is global).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from ..models import Inventory, ManifestInfo
from .decisions import DELETE, ManifestDecision, Plan, TagDecision


@dataclass(slots=True)
class RepoResult:
    """One repository's planned decisions, as the registry-wide steps read them."""

    tags: list[TagDecision]
    manifests: list[ManifestDecision]
    deleted: set[str]
    kept_real: set[str]
    order: list[str]
    remove: bool


def collect(out: Plan, inventory: Inventory, results: Mapping[str, RepoResult]) -> None:
    """Every repository's decisions into the plan, with the exact bytes each delete frees."""
    kept_blobs = _kept_blobs(inventory, results)
    claimed: set[str] = set()
    total = 0
    for name, res in results.items():
        per_manifest = _freed_bytes(inventory.repositories[name].manifests, res.deleted, kept_blobs, claimed)
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


def _kept_blobs(inventory: Inventory, results: Mapping[str, RepoResult]) -> set[str]:
    """Every digest a kept manifest anywhere in the inventory is, or references."""
    kept_blobs: set[str] = set()
    for name, res in results.items():
        mans = inventory.repositories[name].manifests
        for d in res.kept_real:
            kept_blobs.add(d)
            kept_blobs.update(b.digest for b in mans[d].blobs)
    return kept_blobs


def _freed_bytes(
    mans: Mapping[str, ManifestInfo], deleted: set[str], kept_blobs: set[str], claimed: set[str]
) -> dict[str, int]:
    """digest -> bytes its delete frees: the manifest and the blobs no kept manifest references,
    each counted once across the registry (``claimed`` records what was already counted)."""
    per_manifest: dict[str, int] = {}
    for d in sorted(deleted):
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
    return per_manifest


def released_bytes(gone: Mapping[str, tuple[int, Mapping[str, int]]], still_referenced: set[str]) -> int:
    """The bytes a final delete of quarantined manifests frees: ``gone`` is digest -> (manifest
    bytes, {blob digest: size}); a manifest or blob counts once, and only if nothing that stays
    (``still_referenced``: every digest a manifest outside the release is, or references) uses it."""
    counted: set[str] = set()
    n = 0
    for d, (size, blobs) in sorted(gone.items()):
        for digest, sz in [(d, size), *sorted(blobs.items())]:
            if digest not in still_referenced and digest not in counted:
                counted.add(digest)
                n += sz
    return n
