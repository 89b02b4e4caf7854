"""Read-back verification after a copy: every copied tag whose PUT the target did not answer
with the source digest is HEADed on the target and its digest compared with the source digest (a
copied image must be byte-identical); a mismatch turns the tag into a failed item. A tag the
target confirmed (Docker-Content-Digest equal to the digest of the bytes PUT, checked by
``put_manifest``) is not read again: that answer is the read-back. Every untagged referrer
copied this run must be listed by the target's discovery (the API, else its ``sha256-<hex>``
index): ``referrers.verify_referrers``.
"""

from ..oci import RegistryClient
from .plan_model import RepoPlan
from .referrers import verify_referrers
from .result import RepoResult


def verify_copied(
    dst: RegistryClient, plans: list[RepoPlan], results: list[RepoResult], *, concurrency: int = 8
) -> list[tuple[str, str, str]]:
    """Read back every copied tag the target did not confirm (HEAD) and compare with the source
    digest. Returns (repository, tag, problem) for each mismatch; also records it as a failure."""
    want = {(p.target_repo, c.tag): (p, c.digest) for p in plans for c in p.to_copy}
    by_target = {r.target_repo: r for r in results}
    jobs = [(r.target_repo, t) for r in results for t in sorted(set(r.copied) - set(r.confirmed))]

    def head(job):
        repo, tag = job
        h = dst.head_manifest(repo, tag)
        return h.digest if h else None

    problems = []
    for (repo, tag), got, err in dst.map(head, jobs, concurrency):
        wanted = want.get((repo, tag))
        if wanted is None:
            continue
        p, expected = wanted
        if err is not None:
            why = f"read-back failed: {err}"
        elif got != expected:
            why = f"read-back digest {got} differs from the source digest {expected}"
        else:
            continue
        res = by_target[repo]
        res.copied.remove(tag)
        res.failed.append((tag, why))
        problems.append((p.source_repo, tag, why))
    # the referrers copied this run: listed by the target's discovery (one read per subject)
    for repo, digest, why in verify_referrers(dst, plans, results, concurrency):
        problems.append((repo, f"referrer {digest[:19]}", why))
    return problems
