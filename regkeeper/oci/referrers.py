"""OCI 1.1 referrers discovery and the referrers tag schema, for RegistryClient (client.py).

Three ways a registry can hold what refers to a manifest (its ``subject``):

``api``         ``GET /v2/<name>/referrers/<digest>`` answers an OCI image index of
                descriptors (paginated with Link; ``artifactType`` filter, which a registry may
                ignore: it says so in ``OCI-Filters-Applied``, else we filter ourselves).
``tag-schema``  registries without the API (distribution 2.8 and 3): clients keep an index
                tagged ``sha256-<hex of the subject>`` listing the referrers (the fallback).
``cosign-tag``  cosign's own conventions (``sha256-<hex>.sig/.att/.sbom`` tags): seen from the
                tags list, by the inventory (models.signature_subject), not here.

The mode is detected once per registry (the first subject asked about): a 200 index from the
API means ``api``; a 404 (the route does not exist), or a 400 / 405 / 406 / 501 on that first
call, means ``tag-schema``. A manifest PUT
answered with ``OCI-Subject`` also proves the API (see note_put). Errors go through the one
transport (its retry decision, errors naming the registry, call and status).

``walk_referrers`` is THE walk over them, level by level (referrers of referrers), for the
scan (referrers.discover_api), replication and backup.
"""

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import requests

from ..errors import NotFoundError, RegistryError
from .errormap import parse_json
from .manifest import Descriptor, Manifest
from .mediatypes import OCI_INDEX
from .transport import RegistryTransport, next_link

ReferrersMode = Literal["api", "tag-schema"]
MAX_REFERRER_PAGES = 100
REFERRER_DEPTH = 2  # referrers, and referrers of referrers (a signed SBOM)
NO_API_STATUSES = (400, 405, 406, 501)  # besides 404: what a registry without the route answers


def fallback_tag(subject: str) -> str:
    """The referrers tag schema's tag for a subject digest: ``sha256:abc`` -> ``sha256-abc``."""
    algo, _, hexpart = subject.partition(":")
    return f"{algo}-{hexpart}"


def index_bytes(descriptors: list[dict]) -> bytes:
    """An OCI image index listing ``descriptors`` (raw JSON dicts, kept as found)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Referrers:
    """The referrers of one subject: descriptors and how they were found (``api`` or
    ``tag-schema``). ``fallback``: the ``sha256-<hex>`` index manifest itself (tag-schema)."""

    subject: str
    found_by: ReferrersMode
    descriptors: tuple[Descriptor, ...]
    fallback: Manifest | None = None


class ReferrersReader(RegistryTransport):
    """The referrers verbs of RegistryClient (see client.py)."""

    _referrers_mode: ReferrersMode | None = None
    _mode_lock = threading.Lock()

    def get_manifest(self, repo: str, ref: str) -> Manifest:  # pragma: no cover - client.py
        raise NotImplementedError

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:  # pragma: no cover
        raise NotImplementedError

    @property
    def referrers_mode(self) -> ReferrersMode | None:
        """``api`` / ``tag-schema`` once detected (None before the first referrers call)."""
        return self._referrers_mode

    def note_put(self, resp: requests.Response) -> None:
        """A manifest PUT answered with ``OCI-Subject``: the registry has the referrers API."""
        if resp.headers.get("OCI-Subject"):
            self._referrers_mode = "api"

    def probe_referrers(self, repo: str, subject: str) -> Referrers | None:
        """Detect the mode with one API request when not known yet (a 404 route: tag-schema).
        Returns the referrers that request found in API mode (so the caller need not ask
        again), else None."""
        if self._referrers_mode is None:
            return self._probe(repo, subject, None)
        return None

    def _probe(self, repo: str, subject: str, artifact_type: str | None) -> Referrers | None:
        """The API call that detects the mode: a 404 route, and the 400 / 405 / 406 / 501 some
        registries and proxies answer for a route they do not serve, mean no API."""
        try:
            return self._api_referrers(repo, subject, artifact_type)
        except RegistryError as e:
            if self._referrers_mode is None and e.status in NO_API_STATUSES:
                self._set_mode("tag-schema")
                return None
            raise

    def referrers(self, repo: str, subject: str, artifact_type: str | None = None) -> Referrers:
        """Every referrer of ``subject`` in ``repo`` (optionally of one artifact type), by the
        API when the registry has it, else from the referrers tag schema's index."""
        if self._referrers_mode != "tag-schema":
            found = self._probe(repo, subject, artifact_type)
            if found is not None:
                return found
        return self._fallback_referrers(repo, subject, artifact_type)

    def _api_referrers(self, repo: str, subject: str, artifact_type: str | None) -> Referrers | None:
        query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
        path: str | None = f"/v2/{repo}/referrers/{subject}{query}"
        out: list[Descriptor] = []
        filtered = artifact_type is None
        for _ in range(MAX_REFERRER_PAGES):
            if path is None:
                break
            resp = self.request("GET", path, repo=repo, allow_404=True, read=_read_page)
            status, body, headers = resp
            if status == 404 and _repository_unknown(body):
                # the route exists (an OCI error body): a repository not created yet
                self._set_mode("api")
                return Referrers(subject, "api", tuple(out))
            if status == 404:
                # no API (a concurrent first call may have said so already: the same answer)
                if self._referrers_mode != "api" and not out:
                    self._set_mode("tag-schema")
                    return None
                raise NotFoundError(
                    f"referrers of {subject}: 404 from the referrers API",
                    registry=self.name,
                    repository=repo,
                    status=404,
                )
            self._set_mode("api")
            filtered = filtered or "artifactType" in headers.get("OCI-Filters-Applied", "")
            out += _descriptors(body, self.name, repo, subject)
            path = next_link(headers.get("Link"))
        if artifact_type and not filtered:
            out = [d for d in out if d.artifact_type == artifact_type]
        return Referrers(subject, "api", tuple(out))

    def detect_referrers_mode(self, repo: str, subject: str) -> ReferrersMode:
        """The registry's referrers mode, asking the API once (one GET) when not known yet;
        unlike ``referrers`` it never reads the fallback tag."""
        if self._referrers_mode is None and self._probe(repo, subject, None) is None:
            self._set_mode("tag-schema")
        return self._referrers_mode or "tag-schema"

    def _set_mode(self, mode: ReferrersMode) -> None:
        with self._mode_lock:
            if self._referrers_mode is None or mode == "api":
                self._referrers_mode = mode

    def fallback_index(self, repo: str, subject: str) -> Manifest | None:
        """The referrers tag schema's index of ``subject`` (tag ``sha256-<hex>``), or None."""
        try:
            m = self.get_manifest(repo, fallback_tag(subject))
        except NotFoundError:
            return None
        if m.kind != "index":
            raise RegistryError(
                f"tag {fallback_tag(subject)} is not an index (the referrers tag schema needs one)",
                registry=self.name,
                repository=repo,
            )
        return m

    def _fallback_referrers(self, repo: str, subject: str, artifact_type: str | None) -> Referrers:
        idx = self.fallback_index(repo, subject)
        found = tuple(idx.children) if idx is not None else ()
        if artifact_type:
            found = tuple(d for d in found if d.artifact_type == artifact_type)
        return Referrers(subject, "tag-schema", found, idx)

    def update_fallback_index(
        self,
        repo: str,
        subject: str,
        *,
        add: tuple[dict, ...] = (),
        remove: frozenset[str] = frozenset(),
    ) -> tuple[Manifest | None, str | None]:
        """Add descriptors to / remove digests from the ``sha256-<hex>`` index of ``subject``
        and PUT it back under the same tag. Returns (the index before, the new index digest);
        when nothing is left the index is not PUT (new digest None): the caller deletes the
        old one through the delete path. Descriptors already listed are not added twice."""
        before = self.fallback_index(repo, subject)
        entries = (json.loads(before.raw).get("manifests") or []) if before is not None else []
        keep = [e for e in entries if isinstance(e, dict) and e.get("digest") not in remove]
        known = {e.get("digest") for e in keep}
        keep += [d for d in add if d.get("digest") not in known]
        if keep == entries and before is not None:
            return before, before.digest
        if not keep:
            return before, None
        return before, self.put_manifest(repo, fallback_tag(subject), index_bytes(keep), OCI_INDEX)


def descriptor_dict(d: Descriptor) -> dict:
    """A referrer's descriptor as index JSON (what the fallback index lists)."""
    out: dict = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
    if d.artifact_type:
        out["artifactType"] = d.artifact_type
    if d.annotations:
        out["annotations"] = d.annotations
    return out


def referrer_entry(m: Manifest) -> dict:
    """The descriptor a referrers list gives for manifest ``m`` (OCI distribution spec): its
    artifactType, else its config's media type, and its annotations."""
    atype = m.artifact_type or (m.config.media_type if m.config is not None else None)
    return descriptor_dict(Descriptor(m.media_type, m.digest, m.size, None, atype, m.annotations or None))


def _repository_unknown(body: object) -> bool:
    """A 404 answered with an OCI error body (NAME_UNKNOWN...): the referrers route exists,
    the repository does not (a registry without the API answers a plain 'page not found')."""
    errs = body.get("errors") if isinstance(body, dict) else None
    codes = {e.get("code") for e in errs if isinstance(e, dict)} if isinstance(errs, list) else set()
    return bool(codes & {"NAME_UNKNOWN", "MANIFEST_UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Found:
    """A referrer the walk found in ``repo``: under the walk's starting ``subject``, referring
    to ``parent`` (the subject at level 1, a referrer of it below), as the read listed it."""

    repo: str
    subject: str
    parent: str
    descriptor: Descriptor
    level: int
    found_by: str  # "api" | "tag-schema"


@dataclass(frozen=True, slots=True)
class Unread:
    """A referrers read that failed: the parent asked about, under the walk's ``subject``."""

    repo: str
    subject: str
    parent: str
    error: Exception

    def why(self, what: str = "referrers") -> str:
        return f"{what} of {self.parent[:19]} unreadable: {self.error}"


@dataclass(slots=True)
class Walk:
    """What a walk found: ``found`` each referrer once per repository (the first parent listing
    it), level by level; ``listed`` every (repository, parent) read -> all it listed; the
    failed reads (when collected) and the number of reads made (``answered`` ones excluded)."""

    found: list[Found] = field(default_factory=list)
    listed: dict[tuple[str, str], tuple[Descriptor, ...]] = field(default_factory=dict)
    errors: list[Unread] = field(default_factory=list)
    requests: int = 0


# ask(repository, parent digest, its descriptor: None for a starting subject) -> read it?
Ask = Callable[[str, str, Descriptor | None], bool]
_Step = tuple[str, str, str, Descriptor | None]  # (repository, subject, parent, its descriptor)


def walk_referrers(
    client: "ReferrersReader",
    items: Iterable[tuple[str, str]],
    workers: int,
    *,
    ask: Ask | None = None,
    on_error: Literal["raise", "collect"] = "raise",
    missing_ok: bool = False,
    read: Callable[[str, str], Referrers] | None = None,
    answered: Mapping[tuple[str, str], Referrers] | None = None,
) -> Walk:
    """THE referrer walk: the referrers of every (repository, subject) of ``items``, then theirs,
    ``REFERRER_DEPTH`` levels, each level one ``client.map`` at ``workers``. ``read(repo,
    parent)`` (default ``client.referrers``: the API, else the fallback index); ``ask``: False
    skips the read (no fallback tag listed; a signature has no referrers); ``answered``: reads
    made already (the scan's mode probe). A referrer is followed once per repository. A failed
    read raises (``on_error="raise"``) or is kept in ``Walk.errors``; with ``missing_ok`` a 404
    is an empty answer."""
    reader = read or (lambda repo, parent: client.referrers(repo, parent))
    known: dict[tuple[str, str], Referrers | Exception] = dict(answered or {})
    walk = Walk()
    seen: set[tuple[str, str]] = set()
    frontier: list[_Step] = []
    for repo, digest in items:
        if (repo, digest) not in seen:
            seen.add((repo, digest))
            frontier.append((repo, digest, digest, None))
    for level in range(1, REFERRER_DEPTH + 1):
        frontier = [f for f in frontier if ask is None or ask(f[0], f[2], f[3])]
        if not frontier:
            break
        todo = [f for f in frontier if (f[0], f[2]) not in known]
        walk.requests += len(todo)
        for (repo, _, parent, _), got, err in client.map(lambda f: reader(f[0], f[2]), todo, workers):
            known[(repo, parent)] = got if err is None and got is not None else _failed(parent, err)
        nxt: list[_Step] = []
        for repo, subject, parent, _ in frontier:
            ans = known[(repo, parent)]
            if isinstance(ans, Exception):
                if missing_ok and isinstance(ans, NotFoundError):
                    walk.listed[(repo, parent)] = ()
                elif on_error == "raise":
                    raise ans
                else:
                    walk.errors.append(Unread(repo, subject, parent, ans))
                continue
            walk.listed[(repo, parent)] = ans.descriptors
            for d in ans.descriptors:
                if (repo, d.digest) not in seen:
                    seen.add((repo, d.digest))
                    walk.found.append(Found(repo, subject, parent, d, level, ans.found_by))
                    nxt.append((repo, subject, d.digest, d))
        frontier = nxt
    return walk


def _failed(parent: str, err: BaseException | None) -> Exception:
    if isinstance(err, Exception):
        return err
    return RegistryError(f"referrers of {parent}: no answer")


def _read_page(resp: requests.Response) -> tuple[int, object, dict]:
    if resp.status_code == 404:
        try:
            body = resp.json()
        except ValueError:
            body = None
        return 404, body, dict(resp.headers)
    return resp.status_code, parse_json(resp.content), dict(resp.headers)


def _descriptors(body: object, registry: str, repo: str, subject: str) -> list[Descriptor]:
    items = body.get("manifests") if isinstance(body, dict) else None
    if items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(x, dict) and "digest" in x for x in items):
        raise RegistryError(
            f"referrers of {subject}: the answer is not an image index of descriptors",
            registry=registry,
            repository=repo,
        )
    return [Descriptor.from_json(x) for x in items]
