"""What a replication run did: ``RepoResult`` per repository (copied, skipped, failed, deleted,
bytes and blobs moved, lag after the run), ``new_result`` (where a repository starts from its
plan), and ``ReplicationResult`` for one (rule, target) with its status and totals.
"""

from dataclasses import dataclass, field

from .plan_model import ReplicationPlan, RepoPlan


@dataclass(slots=True)
class RepoResult:
    source_repo: str
    target_repo: str
    copied: list[str] = field(default_factory=list)
    # copied tags whose PUT the target answered with the source digest: no read-back needed
    confirmed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in sync
    failed: list[tuple[str, str]] = field(default_factory=list)  # (tag, reason)
    vanished: list[str] = field(default_factory=list)  # gone from the source mid-run
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (tag, digest)
    already_gone: list[tuple[str, str]] = field(default_factory=list)  # (tag, digest): 404 on DELETE
    delete_skipped: list[tuple[str, str]] = field(default_factory=list)  # (tag, why): changed since plan
    delete_failed: list[tuple[str, str]] = field(default_factory=list)  # (tag, reason)
    bytes_uploaded: int = 0
    bytes_mounted: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_put: int = 0
    retries: int = 0  # blob transfers restarted after a broken stream
    lag_before: int = 0
    errors: list[str] = field(default_factory=list)  # repository-level problems
    seconds: float = 0.0
    # referrers carried to the target: (subject, digest, artifact type, found by: api |
    # tag-schema | cosign-tag); failed: (digest, reason); deleted with their subject
    referrers_copied: list[tuple[str, str, str, str]] = field(default_factory=list)
    referrers_failed: list[tuple[str, str]] = field(default_factory=list)
    referrers_deleted: list[tuple[str, str]] = field(default_factory=list)  # (subject, digest)
    referrers_in_sync: int = 0

    @property
    def lag_after(self) -> int:
        """Source tags still missing or different on the target after this run."""
        return len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.delete_failed and not self.errors and not self.referrers_failed

    def row(self) -> dict:
        return {
            "repository": self.source_repo,
            "target_repository": self.target_repo,
            "copied": len(self.copied),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "deleted": len(self.deleted),
            "already_gone": len(self.already_gone),
            "delete_skipped": len(self.delete_skipped),
            "delete_failed": len(self.delete_failed),
            "lag_before": self.lag_before,
            "lag": self.lag_after,
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_mounted": self.bytes_mounted,
            "blobs_uploaded": self.blobs_uploaded,
            "blobs_mounted": self.blobs_mounted,
            "blobs_present": self.blobs_present,
            "retries": self.retries,
            "referrers_copied": len(self.referrers_copied),
            "referrers_in_sync": self.referrers_in_sync,
            "referrers_failed": len(self.referrers_failed),
            "errors": "; ".join(self.errors + [f"{t}: {r}" for t, r in self.failed][:5]),
        }


def new_result(p: RepoPlan) -> RepoResult:
    """The result a repository starts from: in-sync tags skipped, unresolved tags failed."""
    return RepoResult(
        p.source_repo,
        p.target_repo,
        skipped=list(p.in_sync),
        lag_before=p.lag,
        errors=list(p.errors),
        failed=list(p.unresolved),
        referrers_in_sync=p.referrers_in_sync,
    )


@dataclass(slots=True)
class ReplicationResult:
    plan: ReplicationPlan
    repositories: list[RepoResult] = field(default_factory=list)
    deletes_refused: str | None = None
    deletes_stopped: str | None = None  # why deletes stopped early (405: disabled on the target)
    dry_run: bool = False
    seconds: float = 0.0
    target_requests: dict = field(default_factory=dict)
    # deleteExtraneous with the target's quarantine on: manifests held (undoable), their bytes,
    # and the run id `regkeeper undo --run` takes
    held: int = 0
    held_bytes: int = 0
    undo_run: str | None = None

    def note_held(self, res, run: str | None) -> None:
        """Add what a delete batch held in the quarantine (a ``prune.delete.DeleteResult``)."""
        if res.held:
            self.held += len(res.held)
            self.held_bytes += res.held_bytes
            self.undo_run = run

    @property
    def failed_items(self) -> list[tuple[str, str, str]]:
        """(repository, tag, reason) for every item that failed."""
        out = []
        for r in self.repositories:
            out += [(r.source_repo, t, why) for t, why in r.failed]
            out += [(r.source_repo, t, f"delete failed: {why}") for t, why in r.delete_failed]
            out += [(r.source_repo, f"referrer {d[:19]}", why) for d, why in r.referrers_failed]
            out += [(r.source_repo, "*", e) for e in r.errors]
        out += [("*", "*", e) for e in self.plan.errors]
        return out

    def delete_rows(self) -> list[dict]:
        """One row per extraneous tag the run tried to delete, with its outcome."""
        out = []
        for r in self.repositories:
            base = {"repository": r.source_repo, "target_repository": r.target_repo}
            out += [dict(base, tag=t, digest=d, outcome="deleted", reason="") for t, d in r.deleted]
            out += [
                dict(base, tag=t, digest=d, outcome="already gone", reason="404 on DELETE")
                for t, d in r.already_gone
            ]
            out += [
                dict(base, tag=t, digest="", outcome="skipped", reason=why) for t, why in r.delete_skipped
            ]
            out += [dict(base, tag=t, digest="", outcome="failed", reason=why) for t, why in r.delete_failed]
            out += [
                dict(
                    base,
                    tag=f"(referrer of {s[:19]})",
                    digest=d,
                    outcome="deleted",
                    reason="with its subject",
                )
                for s, d in r.referrers_deleted
            ]
        return out

    @property
    def status(self) -> str:
        if self.dry_run:
            return "dry-run" if not self.failed_items else "failed"
        if self.failed_items:
            return "failed"
        if self.deletes_refused:
            return "refused"
        return "ok"

    def totals(self) -> dict:
        rs = self.repositories
        return {
            "repositories": len(rs),
            "copied": sum(len(r.copied) for r in rs),
            "skipped": sum(len(r.skipped) for r in rs),
            "failed": sum(len(r.failed) for r in rs),
            "deleted": sum(len(r.deleted) for r in rs),
            "already_gone": sum(len(r.already_gone) for r in rs),
            "delete_skipped": sum(len(r.delete_skipped) for r in rs),
            "lag_before": self.plan.lag,
            "lag": sum(r.lag_after for r in rs) if not self.dry_run else self.plan.lag,
            "referrers_copied": sum(len(r.referrers_copied) for r in rs),
            "referrers_in_sync": sum(r.referrers_in_sync for r in rs),
            "referrers_failed": sum(len(r.referrers_failed) for r in rs),
            "referrers_deleted": sum(len(r.referrers_deleted) for r in rs),
            "bytes_uploaded": sum(r.bytes_uploaded for r in rs),
            "bytes_mounted": sum(r.bytes_mounted for r in rs),
            "blobs_uploaded": sum(r.blobs_uploaded for r in rs),
            "blobs_mounted": sum(r.blobs_mounted for r in rs),
            "seconds": self.seconds,
        }
