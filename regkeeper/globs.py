"""Glob matching for repository and tag patterns.

Repository globs: `*` matches within one path segment, `**` matches across `/` (including
nothing: `library/**` matches `library/nginx` and `library/a/b`; `**` matches everything).
Tag patterns: `*` and `?` and `[...]` as in fnmatch (tags contain no `/`).
"""

import fnmatch
import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=4096)
def _compile_path_glob(pattern: str) -> re.Pattern:
    i, n = 0, len(pattern)
    out = []
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    # "**/" matches zero or more whole segments
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    regex = "".join(out)
    # "library/**" should also match "library" itself? No: a repository named exactly like the
    # prefix is not "under" it. But "a/**" must match "a/b" and "a/b/c".
    return re.compile(rf"\A{regex}\Z")


def match_path(pattern: str, name: str) -> bool:
    """Match a repository name against a glob where `**` crosses `/`."""
    return _compile_path_glob(pattern).match(name) is not None


def match_any_path(patterns: Iterable[str], name: str) -> str | None:
    """Return the first pattern that matches, or None."""
    for p in patterns:
        if match_path(p, name):
            return p
    return None


def match_tag(pattern: str, tag: str) -> bool:
    return fnmatch.fnmatchcase(tag, pattern)


def match_any_tag(patterns: Iterable[str], tag: str) -> str | None:
    for p in patterns:
        if fnmatch.fnmatchcase(tag, p):
            return p
    return None


def select(name: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    """True when `name` matches one include glob (or include is empty/None) and no exclude glob."""
    inc = list(include or [])
    if inc and match_any_path(inc, name) is None:
        return False
    if exclude and match_any_path(exclude, name) is not None:
        return False
    return True
