"""Verification after deletes: every kept tag still resolves to its digest, and every manifest it
needs (index children) and every blob answers HEAD 200.
"""

from dataclasses import dataclass, field

from ..models import Inventory
from ..oci import RegistryClient
from ..util import bounded_map


@dataclass
class VerifyResult:
    tags_checked: int = 0
    blobs_checked: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)   # (repo, tag, problem)


def verify_kept(client: RegistryClient, inv: Inventory, kept: list[tuple[str, str, str]],
                max_workers: int | None = None) -> VerifyResult:
    """For each kept (repo, tag, digest): the tag resolves to that digest, and every manifest
    it needs (index children) and every blob answers HEAD 200."""
    res = VerifyResult()
    blob_checks: set[tuple[str, str]] = set()

    def check_tag(item):
        repo, tag, digest = item
        head = client.head_manifest(repo, tag)
        if head is None:
            return f"tag missing (expected {digest})"
        if head.digest != digest:
            return f"tag now points to {head.digest}, expected {digest}"
        return None

    for (repo, tag, digest), problem, err in bounded_map(check_tag, kept, max_workers or client.concurrency):
        res.tags_checked += 1
        if err is not None:
            res.problems.append((repo, tag, f"check failed: {err}"))
        elif problem:
            res.problems.append((repo, tag, problem))
        r = inv.repositories.get(repo)
        if r is None:
            continue
        for info in r.closure([digest]):
            blob_checks.update((repo, b.digest) for b in info.blobs)

    def check_blob(item):
        repo, digest = item
        return client.head_blob(repo, digest)

    workers = max_workers or client.concurrency
    for (repo, digest), size, err in bounded_map(check_blob, sorted(blob_checks), workers):
        res.blobs_checked += 1
        if err is not None or size is None:
            res.problems.append((repo, "", f"blob {digest} unreadable: {err or 'HEAD 404'}"))
    return res
