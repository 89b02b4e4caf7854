"""Comparing source and target tags, pure: which tags to copy (``diff_tags``: missing or with a
different digest) and which target tags are extraneous (``extraneous_tags``: in the rule's scope,
gone from the source, and with a digest nothing that stays still needs).
"""

from collections.abc import Callable, Iterable, Mapping

from ..config import TagFilter
from ..models import signature_subject
from .plan_model import TagCopy
from .scope import in_delete_scope, tag_matches


def diff_tags(source: dict[str, str], target: Mapping[str, str | None]) -> tuple[list[TagCopy], list[str]]:
    """(tags to copy, tags in sync). ``target`` maps a tag to its digest (None: unknown)."""
    to_copy, in_sync = [], []
    for t in sorted(source):
        d = source[t]
        have = target.get(t)
        if have == d:
            in_sync.append(t)
        else:
            to_copy.append(TagCopy(tag=t, digest=d, target_digest=have))
    return to_copy, in_sync


def extraneous_tags(
    target: dict[str, str],
    selected_source: dict[str, str],
    tag_filter: TagFilter,
    children_of: Callable[[str], Iterable[str]] | None = None,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """Target tags (tag -> digest) to delete because the source no longer has them.

    Returns (deletable [(tag, digest)], kept [(tag, why)], in-scope tag count). Only tags inside
    the rule's tag scope are considered. A DELETE works by digest and removes every tag on it,
    so a tag is deletable only when its digest is not needed by anything that stays: a target
    tag that stays, a source tag being replicated (same digest), a child of a staying or
    replicated index (``children_of(digest)`` lists an index's children; it is asked only about
    staying digests), or the subject of a signature tag that stays. A signature / referrers
    tag whose subject stays is never deletable: a referrer is part of its subject (the source
    with the API has no ``sha256-<hex>`` tag for a replica's index built from its list).
    """
    in_scope_plain = {t for t in target if not signature_subject(t) and tag_matches(t, tag_filter)}
    scope_digests = {target[t] for t in in_scope_plain}
    scope = {t for t in target if t in in_scope_plain or in_delete_scope(t, tag_filter, scope_digests)}
    candidates = {t: target[t] for t in scope if t not in selected_source}
    if not candidates:
        return [], [], len(scope)
    stays = {t: d for t, d in target.items() if t not in candidates}
    needed: dict[str, str] = {}
    for t, d in stays.items():
        needed.setdefault(d, f"shares digest {d[:19]} with kept tag {t}")
    for t, d in selected_source.items():
        needed.setdefault(d, f"digest {d[:19]} is replicated from the source as {t}")
    for t in list(stays) + list(selected_source):
        s = signature_subject(t)
        if s:
            needed.setdefault(s[0], f"digest {s[0][:19]} is the subject of kept signature {t}")
    if children_of is not None:  # every level: an index of indexes keeps its grandchildren
        work = sorted(set(needed))
        while work:
            d = work.pop()
            for c in children_of(d) or ():
                if c not in needed:
                    needed[c] = f"digest {c[:19]} is a child of kept index {d[:19]}"
                    work.append(c)
    deletable, kept = [], []
    for t in sorted(candidates):
        d = candidates[t]
        s = signature_subject(t)
        if d in needed:
            kept.append((t, needed[d]))
        elif s and s[0] in needed:  # a referrer is part of its subject: it stays with it
            kept.append((t, f"{s[1]} of kept subject {s[0][:19]}"))
        else:
            deletable.append((t, d))
    return deletable, kept, len(scope)
