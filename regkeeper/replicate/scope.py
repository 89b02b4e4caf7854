"""What a replication rule covers: which rules run (``select_rules``), how a source repository
is named on the target (``target_repository`` / ``source_repository``: the rule's prefix), which
repositories are in scope (``scope_repositories``: the rule's include/exclude on the source
catalog, plus target repositories the source no longer has), which tags (``tag_matches``: the
tag filter; ``select_tags``: signature/attestation tags follow their subjects), and which target
tags a delete may touch (``in_delete_scope``).
"""

from collections.abc import Callable, Iterable

from ..config import ReplicationRule, TagFilter
from ..errors import RegistryError
from ..globs import match_any_tag, select
from ..models import signature_subject
from ..oci import RegistryClient


def select_rules(config, name: str | None = None) -> list[ReplicationRule]:
    """The rules a run executes: the named one, or every rule. Errors name the config key."""
    from ..errors import ConfigError

    rules = list(config.replication or [])
    if not rules:
        raise ConfigError(
            f"{config.source or 'config'}: replication: no rules configured "
            "(add e.g. replication: [{from: primary, to: [replica]}])"
        )
    if name is None:
        names = [r.rule_name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"{config.source or 'config'}: replication: two rules are both named "
                f"{dupes[0]!r}: give them distinct `name:` keys"
            )
        return rules
    for r in rules:
        if r.rule_name == name:
            return [r]
    import difflib

    known = [r.rule_name for r in rules]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    raise ConfigError(f"{config.source or 'config'}: replication: no rule named {name!r}{hint}")


def target_repository(prefix: str, repo: str) -> str:
    """``eu`` + ``library/nginx`` -> ``eu/library/nginx``; an empty prefix keeps the name."""
    p = (prefix or "").strip("/")
    return f"{p}/{repo}" if p else repo


def source_repository(prefix: str, target_repo: str) -> str | None:
    """The source name a target repository was replicated from, or None when it is not under
    the prefix (then it is outside every rule with that prefix)."""
    p = (prefix or "").strip("/")
    if not p:
        return target_repo
    if target_repo.startswith(p + "/") and len(target_repo) > len(p) + 1:
        return target_repo[len(p) + 1 :]
    return None


def tag_matches(tag: str, tags: TagFilter) -> bool:
    """The rule's tag filter alone (include patterns, minus exclude patterns)."""
    if tags.include and match_any_tag(tags.include, tag) is None:
        return False
    if tags.exclude and match_any_tag(tags.exclude, tag) is not None:
        return False
    return True


def select_tags(
    tags: dict[str, str], tag_filter: TagFilter, children_of: Callable[[str], Iterable[str]] | None = None
) -> dict[str, str]:
    """The tags (tag -> digest) a rule replicates from one source repository.

    Ordinary tags pass the tag filter. A signature/attestation tag (``sha256-<hex>.sig/.att/
    .sbom``) follows its subject: in scope when its subject digest is the digest of a selected
    tag (or a child of a selected index, looked up through ``children_of``), out of scope when
    the subject is a digest of an unselected tag; a signature whose subject no tag names (an
    orphan, or a subject tagged only by digest) is judged by the tag filter.
    """
    selected = {}
    sigs = {}
    unresolved: dict[str, str] = {}  # signature tag -> its subject digest
    for t, d in tags.items():
        subj = signature_subject(t)
        if subj:
            sigs[t] = d
            unresolved[t] = subj[0]
        elif tag_matches(t, tag_filter):
            selected[t] = d
    if not sigs:
        return selected
    chosen = set(selected.values())
    tagged = {d for t, d in tags.items() if t not in sigs}
    # subjects that are children of selected indexes (looked up only when needed)
    need_children = [s for s in unresolved.values() if s not in chosen and s not in tagged]
    if need_children and children_of is not None:
        for d in sorted(chosen):
            chosen.update(children_of(d) or ())
    # signatures of signatures (cosign signs attestations too): resolve to a fixed point
    changed = True
    while changed:
        changed = False
        for t, subject in list(unresolved.items()):
            if subject in chosen:
                selected[t] = sigs[t]
                chosen.add(sigs[t])
                del unresolved[t]
                changed = True
    for t, subject in unresolved.items():
        if subject not in tagged and tag_matches(t, tag_filter):
            selected[t] = sigs[t]
    return selected


def in_delete_scope(tag: str, tag_filter: TagFilter, scope_digests: set[str]) -> bool:
    """Is a target tag inside the rule's tag scope? Ordinary tags: the tag filter. Signature
    tags: the filter, or their subject is a digest of an in-scope tag."""
    if tag_matches(tag, tag_filter):
        return True
    s = signature_subject(tag)
    return bool(s and s[0] in scope_digests)


def _same_registry(a: RegistryClient, b: RegistryClient) -> bool:
    return a.url.rstrip("/") == b.url.rstrip("/")


def scope_repositories(
    src: RegistryClient, dst: RegistryClient, rule: ReplicationRule
) -> tuple[list[str], list[str], list[str]]:
    """The rule's repositories: (source repositories in scope, source names of target
    repositories under the prefix that the source no longer has (only with deleteExtraneous),
    problems). The source catalog failing raises: nothing can be planned without it."""
    prefix = (rule.prefix or "").strip("/")
    same = _same_registry(src, dst)
    errors: list[str] = []
    if same and not prefix:
        return (
            [],
            [],
            [
                f"rule {rule.rule_name}: source and target are the same registry "
                f"({src.url}) without a prefix: nothing to replicate"
            ],
        )
    repos = [r for r in src.repositories() if select(r, rule.include, rule.exclude)]
    if same:  # never replicate our own replicas again (eu/eu/...)
        repos = [r for r in repos if source_repository(prefix, r) is None]
    removed: list[str] = []
    if rule.delete_extraneous:
        have = set(repos)
        try:
            for tr in dst.repositories():
                sr = source_repository(prefix, tr)
                if sr is None or sr in have or not select(sr, rule.include, rule.exclude):
                    continue
                if same and source_repository(prefix, sr) is not None:
                    continue
                removed.append(sr)
        except RegistryError as e:
            errors.append(
                f"target catalog unreadable, repositories removed from the source "
                f"are not checked for extraneous tags: {e}"
            )
    return sorted(repos), sorted(removed), errors
