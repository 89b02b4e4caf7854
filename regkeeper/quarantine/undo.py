"""Undo: put held manifests back under their original repository and tags. Children and
subjects first, identical bytes (digests identical), blobs linked back by cross-repository mount
from the quarantine repository (the one transfer). A tag that now points to another image is
never overwritten: reported. Each restored tag is verified (the manifest, its children, its
referrers and every blob answer 200). Undone entries leave the quarantine (``release.leave``).
A dry run (the default) reads only and says what would be done."""

from dataclasses import dataclass, field

from ..config import QuarantineConfig
from ..errors import RegkeeperError
from ..globs import match_tag
from ..oci import RegistryClient
from ..oci.manifest import Manifest
from ..oci.referrers import fallback_tag, referrer_entry
from ..policy.graph import tag_subject
from .closure import Linker, closure_blobs, put_by_digest, read_closure
from .listing import read_records
from .record import Entry, Record, quarantine_repo, run_tag


@dataclass
class UndoResult:
    run: str
    dry_run: bool
    restored: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, tag, digest)
    untagged: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest): children, referrers
    moved: list[tuple[str, str, str, str]] = field(default_factory=list)  # (repo, tag, held, now)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, what, why)
    verified: int = 0  # objects that answered 200 after the restore
    left_quarantine: int = 0  # manifests deleted from the quarantine afterwards

    def untagged_back(self) -> dict[tuple[str, str], str]:
        """The held images of moved tags that come back with no tag (none of their other tags
        restored): (repository, digest) -> the first moved tag."""
        tagged = {(r, d) for r, _, d in self.restored}
        out: dict[tuple[str, str], str] = {}
        for r, t, h, _ in self.moved:
            if (r, h) not in tagged:
                out.setdefault((r, h), t)
        return out

    def rows(self) -> list[dict]:
        bare = self.untagged_back()
        out = [{"repository": r, "tag": t, "digest": d, "outcome": _done(self)} for r, t, d in self.restored]
        out += [{"repository": r, "tag": "", "digest": d, "outcome": _done(self)} for r, d in self.untagged]
        out += [
            {
                "repository": r,
                "tag": t,
                "digest": h,
                "outcome": f"NOT restored: tag moved to {n}; the held image "
                + ("would come back" if self.dry_run else "is back")
                + (" by digest only" if (r, h) in bare else " under its other tag(s)"),
            }
            for r, t, h, n in self.moved
        ]
        out += [
            {"repository": r, "tag": w, "digest": "", "outcome": f"failed: {why}"}
            for r, w, why in self.failed
        ]
        return out


def _done(res: UndoResult) -> str:
    return "would be restored" if res.dry_run else "restored, verified"


def nothing_held(
    registry: str, namespace: str, run: str, repositories: str | None = None, listing: str | None = None
) -> str:
    """The one wording for a run the quarantine holds nothing of (the flow's report and the
    CLI's last line). ``listing``: the list command to suggest (default: the bare one)."""
    where = f" for repositories {repositories!r}" if repositories else ""
    return (
        f"registry {registry!r}: the quarantine ({namespace}) holds nothing of run {run_tag(run)!r}"
        f"{where} (released, undone already, or never held: see `{listing or 'regkeeper quarantine list'}`)"
    )


def undo(
    client: RegistryClient,
    cfg: QuarantineConfig,
    run: str,
    *,
    repositories: str | None = None,
    tags: str | None = None,
    apply: bool = False,
    workers: int | None = None,
) -> UndoResult:
    """Undo run ``run`` (optionally only repositories / tags matching the globs)."""
    workers = workers or client.concurrency
    records = read_records(client, cfg.namespace, run=run, repositories=repositories, workers=workers)
    if not records:
        raise RegkeeperError(nothing_held(client.name, cfg.namespace, run, repositories))
    return undo_records(client, cfg, records, apply=apply, tags=tags, workers=workers)


def undo_records(
    client: RegistryClient,
    cfg: QuarantineConfig,
    records: list[Record],
    *,
    apply: bool,
    tags: str | None = None,
    only: dict[int, set[str]] | None = None,
    workers: int | None = None,
    leave_after: bool = True,
) -> UndoResult:
    """Restore the entries of ``records`` (``only``: id(record) -> digests; ``tags``: a tag glob)."""
    workers = workers or client.concurrency
    res = UndoResult(records[0].run if records else "", dry_run=not apply)
    linker = Linker(client)
    for rec in records:
        qrepo = quarantine_repo(cfg.namespace, rec.repository)
        mans, missing = read_closure(client, qrepo, [e.digest for e in rec.entries], workers)
        res.failed += [(rec.repository, d, f"held manifest unreadable: {why}") for d, why in missing]
        sel = _select(rec, mans, tags, None if only is None else only.get(id(rec), set()))
        if not sel:
            continue
        done = _restore(client, linker, rec, qrepo, mans, sel, apply, workers, res)
        if apply and leave_after and done:
            left = _leave(client, cfg.namespace, rec, done, workers)
            res.left_quarantine += len(left.deleted)
            res.failed += [(r, d, f"leaving the quarantine: {why}") for r, d, why in left.failed]
    return res


def _leave(client, namespace, rec, done, workers):
    from .release import leave

    return leave(client, namespace, rec, done, workers)


def _select(rec: Record, mans: dict[str, Manifest], tags: str | None, only: set[str] | None) -> list[Entry]:
    """The selected entries, plus every held entry below them (children) or referring to them."""
    roots = {e.digest for e in rec.entries if e.digest in mans and (only is None or e.digest in only)}
    if tags is not None:
        roots = {
            e.digest for e in rec.entries if e.digest in roots and any(match_tag(tags, t) for t in e.tags)
        }
    picked = set(roots)
    grew = True
    while grew:
        grew = False
        for e in rec.entries:
            m = mans.get(e.digest)
            if m is None or e.digest in picked:
                continue
            parent_picked = any(e.digest in mans[p].referenced_manifests() for p in picked if p in mans)
            subject_picked = m.subject is not None and m.subject.digest in picked
            tagged_for = {s[0] for s in map(tag_subject, e.tags) if s is not None}  # sha256-<hex>.sig
            if parent_picked or subject_picked or tagged_for & picked:
                picked.add(e.digest)
                grew = True
    return [e for e in rec.entries if e.digest in picked]


def _restore(client, linker, rec, qrepo, mans, sel, apply, workers, res: UndoResult) -> set[str]:
    """Put ``sel`` back (or, dry run, say what would be); returns the digests restored."""
    repo = rec.repository
    closure, _ = read_closure(client, qrepo, [e.digest for e in sel], workers)
    want = [(e, t) for e in sel for t in e.tags]
    heads = client.map(lambda et: client.head_manifest(repo, et[1]), want, workers)
    tag_puts: list[tuple[Entry, str]] = []
    for (e, t), head, err in heads:
        if err is not None:
            res.failed.append((repo, t, f"tag could not be read: {err}"))
        elif head is not None and head.digest != e.digest:
            res.moved.append((repo, t, e.digest, head.digest))
        else:
            tag_puts.append((e, t))
    if not apply:
        res.restored += [(repo, t, e.digest) for e, t in tag_puts]
        res.untagged += [(repo, e.digest) for e in sel if not e.tags]
        return set()
    blobs = closure_blobs(closure.values())
    bad = linker.link(repo, qrepo, blobs, workers, check_present=True)
    if bad:
        res.failed += [(repo, b, f"blob not linked back: {why}") for b, why in bad]
        return set()
    failed = dict(put_by_digest(client, repo, closure, workers))
    res.failed += [(repo, d, f"manifest not put back: {why}") for d, why in failed.items()]
    put = lambda et: client.put_manifest(repo, et[1], mans[et[0].digest].raw, mans[et[0].digest].media_type)  # noqa: E731
    ok_tags = []
    for (e, t), _, err in client.map(put, [et for et in tag_puts if et[0].digest not in failed], workers):
        if err is not None:
            res.failed.append((repo, t, f"tag not put back: {err}"))
        else:
            ok_tags.append((e, t))
    problems = _verify(client, repo, closure, blobs, ok_tags, workers)
    unlisted = _refer_back(client, repo, closure, set(failed))
    res.failed += [(repo, what, why) for what, why in problems + unlisted]
    res.verified += len(closure) + len(blobs) + len(ok_tags) - len(problems)
    bad_tags = {w for w, _ in problems}
    res.restored += [(repo, t, e.digest) for e, t in ok_tags if t not in bad_tags]
    res.untagged += [(repo, e.digest) for e in sel if not e.tags and e.digest not in failed]
    return {e.digest for e in sel if e.digest not in failed} if not problems and not unlisted else set()


def _refer_back(client, repo: str, closure: dict[str, Manifest], failed: set[str]) -> list[tuple[str, str]]:
    """On a registry without the referrers API, a referrer that was deleted alone (its subject
    kept, e.g. by ``deleteExtraneous``; gc's repair then took it out of the subject's fallback
    index) is listed there again. A referrer restored with its subject comes back with the held
    index as it was (not rewritten here); an index already listing it is not rewritten."""
    by_subject: dict[str, list[dict]] = {}
    for d, m in sorted(closure.items()):
        if m.subject is not None and m.subject.digest not in closure and d not in failed:
            by_subject.setdefault(m.subject.digest, []).append(referrer_entry(m))
    out: list[tuple[str, str]] = []
    for subject, entries in by_subject.items():
        try:
            if client.detect_referrers_mode(repo, subject) == "api":
                return out
            client.update_fallback_index(repo, subject, add=tuple(entries))
        except RegkeeperError as e:
            out.append((fallback_tag(subject), f"fallback index not updated: {e}"))
    return out


def _verify(client, repo, closure, blobs, tags, workers) -> list[tuple[str, str]]:
    """Each restored tag resolves to its digest; every manifest and blob of the closure answers 200."""
    checks = [("tag", t, e.digest) for e, t in tags]
    checks += [("manifest", d, d) for d in closure] + [("blob", b, b) for b in blobs]

    def one(c):
        kind, ref, digest = c
        if kind == "blob":
            return client.head_blob(repo, ref) is not None
        head = client.head_manifest(repo, ref)
        return head is not None and head.digest == digest

    out = []
    for (kind, ref, _), ok, err in client.map(one, checks, workers):
        if err is not None or not ok:
            out.append((ref, f"{kind} does not answer after the restore" + (f" ({err})" if err else "")))
    return out
