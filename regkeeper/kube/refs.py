"""Image references: the docker reference grammar and its Docker Hub defaults.

:func:`parse_image_ref` turns the strings found in pod specs and container statuses (``nginx``,
``registry.local:5000/team/app:1.2``, ``repo:tag@sha256:...``, ``docker-pullable://repo@sha256:...``)
into a normalised :class:`ImageRef`, following github.com/distribution/reference and its
normalisation (``docker.io``, ``library/``, ``latest``). :func:`normalize_host` and
:func:`registry_hosts` put registry hosts in the same form, so references can be matched to a
registry by host.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

DEFAULT_HOST = "docker.io"
LEGACY_DEFAULT_HOST = "index.docker.io"
OFFICIAL_PREFIX = "library/"

# distribution/reference regexp.go, anchored pieces
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_NAME_TOTAL_MAX = 255
_RUNTIME_PREFIXES = ("docker-pullable://", "docker://")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference: ``host/repository[:tag][@digest]``.

    ``host`` is lower-cased (``docker.io`` for Docker Hub), ``repository`` carries the
    ``library/`` prefix for official Docker Hub images, ``tag`` is ``latest`` only when the
    reference had neither tag nor digest.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``host/repository`` (what docker calls the fully-qualified name)."""
        return f"{self.host}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short form docker prints: ``nginx``, ``team/app``, ``registry.local:5000/app``."""
        if self.host == DEFAULT_HOST:
            repo = self.repository
            if repo.startswith(OFFICIAL_PREFIX) and "/" not in repo[len(OFFICIAL_PREFIX) :]:
                repo = repo[len(OFFICIAL_PREFIX) :]
            return repo
        return self.name

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def canonical(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __str__(self) -> str:
        return self.canonical


def _bad(ref: str, why: str) -> ValueError:
    return ValueError(f"invalid image reference {ref!r}: {why}")


def parse_image_ref(s: str) -> ImageRef:
    """Parse and normalise an image reference the way docker/containerd/kubelet do.

    Accepts what appears in ``spec.containers[].image`` and ``status.containerStatuses[].imageID``
    (``docker-pullable://`` and ``docker://`` prefixes are stripped). Raises ``ValueError`` naming
    the reference when it is not valid (uppercase repository, bad tag or digest, bare image ID).
    """
    if not isinstance(s, str):
        raise ValueError(f"invalid image reference {s!r}: not a string")
    return _parse_cached(s)


@lru_cache(maxsize=65536)
def _parse_cached(original: str) -> ImageRef:
    s = _strip_runtime_prefix(original)
    _reject_non_references(s, original)
    s, digest = _split_digest(s, original)
    s, tag = _split_tag(s, original)
    host, remainder = _split_domain(s, original)
    remainder = _check_repository(host, remainder, original)
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host=host, repository=remainder, tag=tag, digest=digest)


def _strip_runtime_prefix(s: str) -> str:
    for prefix in _RUNTIME_PREFIXES:
        if s.startswith(prefix):
            return s[len(prefix) :]
    return s


def _reject_non_references(s: str, original: str) -> None:
    """Empty, whitespace, and bare image IDs (no repository to match a registry by)."""
    if not s:
        raise _bad(original, "empty")
    if s != s.strip() or any(c.isspace() for c in s):
        raise _bad(original, "contains whitespace")
    if _IDENTIFIER_RE.match(s):
        raise _bad(original, "a 64-character hexadecimal image ID is not a repository reference")
    if _DIGEST_RE.match(s) and "/" not in s and "@" not in s:
        # "sha256:<hex>": a local image ID (what docker:// and some containerd imageIDs carry)
        algo = s.split(":", 1)[0]
        if algo.lower() in _DIGEST_HEX_LEN:
            raise _bad(original, "an image ID without a repository cannot be matched to a registry")


def _split_digest(s: str, original: str) -> tuple[str, str | None]:
    """``name@algo:hex`` -> (name, digest), the digest checked for a known algorithm and length."""
    if "@" not in s:
        return s, None
    s, _, digest = s.partition("@")
    if "@" in digest:
        raise _bad(original, "more than one '@'")
    m = _DIGEST_RE.match(digest)
    if not m:
        raise _bad(original, f"digest {digest!r} is not <algorithm>:<hex>")
    algo, hexpart = m.group(1), m.group(2)
    want = _DIGEST_HEX_LEN.get(algo)
    if want is None:
        raise _bad(original, f"unsupported digest algorithm {algo!r}")
    if len(hexpart) != want:
        raise _bad(original, f"{algo} digest must have {want} hex characters, not {len(hexpart)}")
    if hexpart != hexpart.lower():
        raise _bad(original, "digest hex must be lowercase")
    if not s:
        raise _bad(original, "no repository before '@'")
    return s, digest


def _split_tag(s: str, original: str) -> tuple[str, str | None]:
    """The tag is what follows the last ':' after the last '/'."""
    last_slash = s.rfind("/")
    colon = s.rfind(":")
    if colon <= last_slash:
        return s, None
    s, tag = s[:colon], s[colon + 1 :]
    if not _TAG_RE.match(tag):
        raise _bad(original, f"tag {tag!r} is not valid (letters, digits, '_', '.', '-', at most 128)")
    return s, tag


def _split_domain(s: str, original: str) -> tuple[str, str]:
    """(host, repository) as docker's splitDockerDomain does; Docker Hub when there is no host."""
    slash = s.find("/")
    first = s[:slash] if slash >= 0 else ""
    if slash == -1 or (not any(c in first for c in ".:") and first != "localhost"):
        # newer docker reads an upper-case first component ("Foo/bar") as a registry host; we
        # fold hosts to lower case, so that reading would not round-trip: reject it, as docker
        # did before (and as the kubelet of many clusters still does)
        return DEFAULT_HOST, s
    host, remainder = first, s[slash + 1 :]
    if not _DOMAIN_RE.match(host):
        raise _bad(original, f"registry host {host!r} is not valid")
    host = host.lower()
    if host == LEGACY_DEFAULT_HOST:
        host = DEFAULT_HOST
    return host, remainder


def _check_repository(host: str, remainder: str, original: str) -> str:
    """The repository path, validated, with ``library/`` for official Docker Hub images."""
    if not remainder:
        raise _bad(original, "empty repository name")
    if remainder.lower() != remainder:
        raise _bad(original, f"repository name {remainder!r} must be lowercase")
    if not _PATH_RE.match(remainder):
        raise _bad(original, f"repository name {remainder!r} is not valid")
    if host == DEFAULT_HOST and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    if len(host) + 1 + len(remainder) > _NAME_TOTAL_MAX:
        raise _bad(original, f"repository name longer than {_NAME_TOTAL_MAX} characters")
    return remainder


def normalize_host(host: str) -> str:
    """``https://Registry.Local:5000/`` -> ``registry.local:5000``; ``index.docker.io`` -> ``docker.io``.

    No other magic: ``localhost:5000`` and ``127.0.0.1:5000`` stay different hosts, and a host
    without a port is not the same as one with ``:443``.
    """
    h = (host or "").strip()
    if "://" in h:
        p = urlsplit(h)
        h = p.netloc.rsplit("@", 1)[-1]
    h = h.split("/", 1)[0].lower()
    if not h:
        raise ValueError(f"registry host {host!r} is empty")
    return DEFAULT_HOST if h == LEGACY_DEFAULT_HOST else h


def registry_hosts(url: str | None, aliases: Iterable[str] = ()) -> list[str]:
    """The hosts a registry is reached under: its URL's host plus configured aliases
    (``kubernetes.registryAliases[<registry name>]``), normalised and de-duplicated."""
    out: list[str] = []
    for h in ([url] if url else []) + list(aliases or ()):
        n = normalize_host(h)
        if n not in out:
            out.append(n)
    return out


def _is_image_id_only(value: str) -> bool:
    """``sha256:<hex>`` / ``docker://sha256:<hex>``: a local image ID, not a pullable reference."""
    v = _strip_runtime_prefix(value)
    return (
        "/" not in v and "@" not in v and bool(_DIGEST_RE.match(v)) and v.split(":", 1)[0] in _DIGEST_HEX_LEN
    )
