"""Restore's referrers pass: after the tags, the referrers the snapshot recorded for them.

Tag-carried referrers (``sha256-<hex>`` fallback index tags, cosign ``.sig/.att/.sbom`` tags)
are tags of the snapshot: the tag pass restores them (children first), and a registry with the
referrers API indexes the fallback index's entries when they are PUT. The untagged referrers a
registry's API listed at backup time (``found_by: api``) get one row each here, level by level
(referrers of the subject, then referrers of referrers), each only once what it refers to is
there: diff (is it listed by the registry's discovery now?), the same phases as tags (manifests
by digest children first, blobs supplied), then, on a registry without the API, its descriptor
added to the parent's ``sha256-<hex>`` index; verified by discovery (listed after the restore).
"""

from ..oci.referrers import REFERRER_DEPTH
from .restore_result import (
    ACTION_CANNOT,
    ACTION_LEFT_MOVED,
    ACTION_MOVED,
    ACTION_PRESENT,
    ACTION_RESTORED,
    ACTION_WOULD_MOVE,
    ACTION_WOULD_RESTORE,
    RestoreRow,
)

_THERE = {ACTION_PRESENT, ACTION_RESTORED, ACTION_MOVED}
_WOULD_BE_THERE = _THERE | {ACTION_WOULD_RESTORE, ACTION_WOULD_MOVE}


def restore_referrers(r, repos: list[str], tag_rows: list[RestoreRow]) -> list[RestoreRow]:
    """Rows for the API-found referrers of ``repos`` (``r``: the batch's ``_Restorer``)."""
    first = next(((repo, d) for repo in repos for d in sorted(r.snap.tags(repo).values())), None)
    if first is not None:  # the registry's referrers mode, for the report (one GET, once)
        r.c.detect_referrers_mode(*first)
    ok_actions = _WOULD_BE_THERE if r.dry_run else _THERE
    there = {(x.repository, x.digest) for x in tag_rows if x.action in ok_actions}
    left = {(x.repository, x.digest) for x in tag_rows if x.action == ACTION_LEFT_MOVED} - there
    out: list[RestoreRow] = []
    for level in range(1, REFERRER_DEPTH + 1):
        rows = []
        for repo in repos:
            for subject, entries in sorted(r.snap.referrers(repo).items()):
                for e in entries:
                    if e.get("found_by") != "api" or (level == 1) != (e.get("parent") == subject):
                        continue
                    row = RestoreRow(repo, f"(referrer {e['digest'][:19]})", e["digest"], "", state="missing")
                    row.kind, row.subject, row.parent = "referrer", subject, e.get("parent") or subject
                    row.artifact_type, row.found_by = e.get("artifact_type") or "", "api"
                    row.descriptor = e.get("descriptor") or {}
                    if (repo, row.parent) in left:
                        row.action = ACTION_LEFT_MOVED
                        row.reason = f"its subject's tag was left moved ({row.parent[:19]} not restored)"
                    elif (repo, row.parent) not in there:
                        row.action = ACTION_CANNOT
                        row.reason = f"what it refers to ({row.parent[:19]}) is not restored"
                    rows.append(row)
        if not rows:
            break
        _level(r, rows)
        there |= {(x.repository, x.digest) for x in rows if x.action in ok_actions}
        left |= {(x.repository, x.digest) for x in rows if x.action == ACTION_LEFT_MOVED}
        out += rows
    return out


def _listed(r, rows: list[RestoreRow]) -> dict[tuple[str, str], set[str]]:
    """(repository, parent) -> the digests the registry's discovery lists now."""
    pairs = sorted({(x.repository, x.parent) for x in rows})
    found: dict[tuple[str, str], set[str]] = {}
    for pair, res, err in r._map(lambda p: r.c.referrers(p[0], p[1]), pairs):
        if err is not None:
            raise err
        found[pair] = {d.digest for d in res.descriptors}
    return found


def _level(r, rows: list[RestoreRow]) -> None:
    """One level of referrer rows through the restore phases."""
    live = [x for x in rows if not x.action]
    if not live:
        return
    listed = _listed(r, live)
    for x in live:
        if x.digest in listed.get((x.repository, x.parent), set()):
            x.state, x.action = "present", ACTION_PRESENT
    work = [x for x in live if not x.action]
    if not work:
        return
    r.blob_desc.clear()  # the tag pass is done: HEAD only this level's blobs
    r._find_missing_blobs(r._find_missing_manifests(work))
    r._provide(list(r.missing_blob_set), dry=True)
    r._count_missing(work)
    r._judge(work)
    todo = [x for x in work if x.action != ACTION_CANNOT]
    if r.dry_run:
        for x in todo:
            x.action, x.reason = ACTION_WOULD_RESTORE, "not listed by the registry's referrers discovery"
        return
    todo = r._fetch_blobs(todo)
    put_failed = r._put_manifests(todo)
    for x in todo:
        bad = [put_failed[(x.repository, d)] for d in r.closure(x.digest) if (x.repository, d) in put_failed]
        if bad:
            x.action, x.reason = ACTION_CANNOT, bad[0]
    todo = [x for x in todo if x.action != ACTION_CANNOT]
    if r.c.referrers_mode == "tag-schema":
        _add_to_indexes(r, todo)
    after = _listed(r, [x for x in todo if x.action != ACTION_CANNOT])
    for x in todo:
        if x.action == ACTION_CANNOT:
            continue
        if x.digest in after.get((x.repository, x.parent), set()):
            x.action, x.reason = ACTION_RESTORED, "re-created after its subject"
        else:
            x.action, x.reason = ACTION_CANNOT, "verify failed: not listed by the registry's discovery"


def _add_to_indexes(r, todo: list[RestoreRow]) -> None:
    """A registry without the API: the restored referrers into their parents' index."""
    groups: dict[tuple[str, str], list[RestoreRow]] = {}
    for x in todo:
        groups.setdefault((x.repository, x.parent), []).append(x)

    def add(key):
        repo, parent = key
        return r.c.update_fallback_index(repo, parent, add=tuple(x.descriptor for x in groups[key]))

    for key, _out, err in r._map(add, sorted(groups)):
        if err is not None:
            for x in groups[key]:
                x.action, x.reason = ACTION_CANNOT, f"fallback index of {key[1][:19]} not updated: {err}"
        else:
            r.bump("fallback_indexes_put", 1)


def referrer_report_rows(snap, repos: list[str], rows: list[RestoreRow]) -> list[dict]:
    """Every referrer the snapshot recorded for ``repos``, with what the restore did: its own
    row (API-found), or the row of the tag that carries it (fallback index, cosign tag)."""
    by_key = {(x.repository, x.tag): x for x in rows}
    by_digest = {(x.repository, x.digest): x for x in rows if x.kind == "referrer"}
    out = []
    for repo in repos:
        tags = snap.tags(repo)
        by_tag_digest = {d: t for t, d in tags.items()}
        for subject, entries in sorted(snap.referrers(repo).items()):
            for e in entries:
                row = by_digest.get((repo, e["digest"]))
                if row is None:  # carried by a tag
                    carrier = _carrier(e, subject, by_tag_digest)
                    row = by_key.get((repo, carrier)) if carrier else None
                out.append(
                    {
                        "repository": repo,
                        "subject": subject,
                        "referrer": e["digest"],
                        "artifact_type": e.get("artifact_type") or "",
                        "found_by": e.get("found_by") or "",
                        "action": row.action if row is not None else "",
                        "reason": row.reason if row is not None else "",
                    }
                )
    return out


def _carrier(e: dict, subject: str, by_tag_digest: dict[str, str]) -> str | None:
    if e.get("found_by") == "cosign-tag":
        return by_tag_digest.get(e["digest"])
    algo, _, hexpart = e.get("parent", subject).partition(":")
    return f"{algo}-{hexpart}"
