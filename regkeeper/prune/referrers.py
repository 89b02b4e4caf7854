"""Referrers in a gc / expire run: the per-subject table and counts of the report, and the
fallback index repair after the deletes.

The plan decides referrers with their subjects (regkeeper/policy/graph.py); this module reads
the inventory's referrer model (regkeeper/referrers.py) beside the plan's manifest decisions:
one row per referrer (subject, type, digest, how discovered, what happens to it and why).

Fallback indexes (``sha256-<hex>`` tags, registries without the referrers API): the plan keeps
or deletes an index with its subject. A kept index that still lists an entry this run deleted,
or one that is not there any more (a referrer deleted behind its back), is re-PUT without it
under the same tag (``RegistryClient.update_fallback_index``); one left empty is deleted through
the one delete path. No dangling entry remains. The flow hands the delete path every repository
with deletes and every one ``needs_repair`` names.
"""

from ..models import Inventory
from ..oci import RegistryClient
from ..oci.referrers import fallback_tag
from ..policy import DELETE, KEEP, Plan, is_real
from .delete import DeleteResult, delete_manifests

COLUMNS = ["action", "repository", "subject", "referrer_type", "discovered_by", "tags", "reason", "digest"]


def referrer_rows(plan: Plan, inv: Inventory) -> list[dict]:
    """One row per referrer of the inventory with the plan's decision on it."""
    decided = {(m.repository, m.digest): m for m in plan.manifests}
    rows = []
    for repo in sorted(inv.repositories):
        r = inv.repositories[repo]
        for subject in sorted(r.referrers):
            for ref in r.referrers[subject]:
                m = decided.get((repo, ref.digest))
                if m is None:  # listed (by the API or an index) but not readable: nothing to decide
                    continue
                rows.append(
                    {
                        "action": m.action,
                        "repository": repo,
                        "subject": subject,
                        "referrer_type": ref.artifact_type,
                        "discovered_by": ref.discovered_by,
                        "tags": ",".join(ref.tags),
                        "reason": m.reason,
                        "digest": ref.digest,
                        "orphan": not is_real(r.manifests.get(subject)),
                    }
                )
    return sorted(rows, key=lambda x: (x["action"] != DELETE, x["repository"], x["subject"], x["digest"]))


def referrer_summary(rows: list[dict], preview: bool) -> dict:
    """The report's referrer figures, apart from the images'."""
    deleted = [x for x in rows if x["action"] == DELETE]
    orphans = sum(1 for x in deleted if x["orphan"])
    return {
        "referrers to delete" if preview else "referrers deleted": len(deleted),
        "referrers kept": sum(1 for x in rows if x["action"] == KEEP),
        "orphan referrers to remove" if preview else "orphan referrers removed": orphans,
    }


def needs_repair(inv: Inventory) -> list[str]:
    """Repositories with a fallback index that lists a referrer which is not there."""
    return sorted(
        repo
        for repo, r in inv.repositories.items()
        if any(
            not is_real(r.manifests.get(c.digest))
            for idx in r.fallback_indexes.values()
            for c in r.manifests[idx].children
        )
    )


def repair_fallback_indexes(
    client: RegistryClient, inv: Inventory, plan: Plan, res: DeleteResult, repos: set[str]
) -> None:
    """After the deletes of ``repos``: every kept fallback index without the entries that are
    gone (deleted now, or missing); an index left empty is deleted. Updates ``res``."""
    gone = set(res.deleted) | set(res.already_gone)
    deleted_now = {(m.repository, m.digest) for m in plan.deleted_manifests()}
    for repo in sorted(repos):
        r = inv.repositories.get(repo)
        if r is None:
            continue
        for subject, idx in sorted(r.fallback_indexes.items()):
            if (repo, idx) in deleted_now or (repo, idx) in gone:
                continue
            entries = [c.digest for c in r.manifests[idx].children]
            drop = frozenset(d for d in entries if (repo, d) in gone or not is_real(r.manifests.get(d)))
            if drop:
                drop_fallback_entries(client, repo, subject, drop, res, index=idx)


def drop_fallback_entries(
    client: RegistryClient,
    repo: str,
    subject: str,
    drop: frozenset[str],
    res: DeleteResult,
    index: str | None = None,
) -> None:
    """Take ``drop`` out of ``subject``'s fallback index (re-PUT under the same tag); an index
    left empty is deleted through the one delete path. An index that does not exist or lists
    none of them is left alone. The outcome goes into ``res`` (``fallback_updates``, failures,
    named by the ``index`` digest when known)."""
    try:
        before, new = client.update_fallback_index(repo, subject, remove=drop)
    except Exception as e:  # noqa: BLE001 - reported, the run carries on
        res.failed.append((repo, index or fallback_tag(subject), f"fallback index update failed: {e}"))
        return
    if before is None or new == before.digest:
        return
    if new is None:
        res.merge(delete_manifests(client, [(repo, before.digest)]))
    res.fallback_updates.append((repo, subject, new))
