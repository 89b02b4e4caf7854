"""Deleting extraneous target tags (``deleteExtraneous``): the cap check
(``check_delete_cap``: never more than ``maxDeleteFraction`` of the in-scope target tags
without ``force``) and the DELETE calls (``ExtraneousDelete.delete``, by digest, a digest once).
Which tags are extraneous is decided in ``diff.py``.

A later phase replaces ``ExtraneousDelete`` with the ONE delete path
(``regkeeper/prune/delete.py``, quarantine and undo included) and the cap with the ONE cap.
"""

from ..errors import DeletesDisabledError, RegistryError
from .plan_model import ReplicationPlan, RepoPlan
from .result import RepoResult


def check_delete_cap(plan: ReplicationPlan, max_fraction: float = 0.5, force: bool = False) -> str | None:
    """None when the plan's deletes are within the cap (or forced), else why they are refused."""
    n = plan.extraneous
    if not n or force:
        return None
    scope = plan.scope_tags
    if scope and n / scope <= max_fraction:
        return None
    return (f"deleteExtraneous would delete {n} of {scope} in-scope tags on {plan.target} "
            f"({n / scope:.0%} > maxDeleteFraction {max_fraction:.0%}); nothing deleted. "
            "Re-run with --force to delete them")


class ExtraneousDelete:
    """The delete half of ``Replicator`` (a mixin; uses ``self.dst``).

    To be replaced by the ONE delete path (``regkeeper/prune/delete.py``)."""

    def delete(self, plan: RepoPlan, res: RepoResult) -> None:
        """Delete the plan's extraneous target tags (by digest; the plan already proved no
        staying tag or index needs the digest). The caller checks the cap first."""
        done: set[str] = set()
        for tag, digest in plan.extraneous:
            if digest in done:
                res.deleted.append((tag, digest))
                continue
            try:
                self.dst.delete_manifest(plan.target_repo, digest)
                done.add(digest)
                res.deleted.append((tag, digest))
            except RegistryError as e:
                res.delete_failed.append((tag, str(e)))
                if isinstance(e, DeletesDisabledError):
                    for t, _ in plan.extraneous:
                        if t != tag and all(t != x for x, _ in res.deleted + res.delete_failed):
                            res.delete_failed.append((t, "deletes are disabled on the target"))
                    return
