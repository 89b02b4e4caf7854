"""Typed data shared by every job: the registry inventory (descriptors and parsed manifests are
re-exported from regkeeper.oci).

Plain dataclasses (cheap to build by the ten thousand); the inventory converts to a pandas
DataFrame / CSV / JSON for reports and the CLI.
"""

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

# Media types, Descriptor and Manifest live in regkeeper.oci (mediatypes.py, manifest.py);
# re-exported here for the modules that still import them from models.
from .oci.manifest import CREATED_ANNOTATION, Descriptor, Manifest, ManifestKind  # noqa: F401
from .oci.mediatypes import (  # noqa: F401
    ACCEPT_MANIFESTS,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    IMAGE_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

# cosign-style tags: sha256-<64 hex>.sig / .att / .sbom, and the bare sha256-<64 hex> tag that
# the OCI referrers tag schema uses on registries without a referrers API (distribution 2.8)
SIGNATURE_TAG_RE = re.compile(r"^(sha256)-([0-9a-f]{64})(?:\.(sig|att|sbom))?$")


def signature_subject(tag: str) -> tuple[str, str] | None:
    """For a cosign-style or referrers tag return (subject digest, kind), else None; kind is
    ``sig`` | ``att`` | ``sbom`` | ``referrers``."""
    m = SIGNATURE_TAG_RE.match(tag)
    if not m:
        return None
    return f"{m.group(1)}:{m.group(2)}", m.group(3) or "referrers"


def _parse_time(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    # Go emits nanoseconds; Python handles up to microseconds.
    m = re.match(r"^(.*\.\d{6})\d+(.*)$", v)
    if m:
        v = m.group(1) + m.group(2)
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt.year < 1971:  # reproducible builds set created to the epoch: not a real time
        return None
    return dt


parse_time = _parse_time


@dataclass(slots=True)
class ManifestInfo:
    """What the inventory keeps per manifest digest in a repository."""

    digest: str
    media_type: str
    kind: ManifestKind
    size: int  # manifest bytes
    config_digest: str | None = None
    blobs: list[Descriptor] = field(default_factory=list)  # config + layers
    children: list[Descriptor] = field(default_factory=list)  # index children
    subject: str | None = None  # OCI subject digest (referrers)
    created: datetime | None = None  # image config `created` (or index: newest child)
    created_source: str | None = None  # "config" | "annotation" | None
    annotations: dict = field(default_factory=dict)
    artifact_type: str | None = None

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    @property
    def platforms(self) -> list[str]:
        return [c.platform for c in self.children if c.platform]


# How a referrer was found (regkeeper/referrers.py links them; the first that finds one names it)
DISCOVERED_BY = ("api", "tag-schema", "cosign-tag", "subject-field")


@dataclass(frozen=True, slots=True)
class Referrer:
    """Something that refers to a subject manifest: an SBOM, attestation or signature found by
    the referrers API, listed in the ``sha256-<hex>`` fallback index, tagged the cosign way
    (``sha256-<hex>.sig/.att/.sbom``) or carrying a ``subject`` field (tagged or not)."""

    digest: str
    subject: str
    artifact_type: str
    discovered_by: str  # one of DISCOVERED_BY
    tags: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "digest": self.digest,
            "subject": self.subject,
            "artifact_type": self.artifact_type,
            "discovered_by": self.discovered_by,
            "tags": list(self.tags),
        }


@dataclass(slots=True)
class RepoInventory:
    name: str
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    manifests: dict[str, ManifestInfo] = field(default_factory=dict)  # digest -> info
    push_times: dict[str, datetime] = field(default_factory=dict)  # tag -> push time (storage)
    untagged: list[str] = field(default_factory=list)  # digests known only from storage
    untagged_pushed: dict[str, datetime] = field(default_factory=dict)  # untagged digest -> push time
    errors: list[str] = field(default_factory=list)  # per-tag scan problems
    # subject digest -> its referrers (regkeeper.referrers.link_referrers), and the digest of the
    # subject's sha256-<hex> fallback index where one exists
    referrers: dict[str, list[Referrer]] = field(default_factory=dict)
    fallback_indexes: dict[str, str] = field(default_factory=dict)

    def referrer_of(self) -> dict[str, Referrer]:
        """referrer digest -> how it refers to its subject (one link per referrer)."""
        return {ref.digest: ref for refs in self.referrers.values() for ref in refs}

    def closure(self, digests) -> list["ManifestInfo"]:
        """The manifests reachable from ``digests`` (index children, recursively), each once,
        known ones only (a referenced-but-missing child is an empty placeholder: skipped)."""
        out: list[ManifestInfo] = []
        seen: set[str] = set()
        stack = sorted(set(digests), reverse=True)
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            info = self.manifests.get(d)
            if info is None or (not info.media_type and info.size == 0):
                continue
            out.append(info)
            stack.extend(c.digest for c in reversed(info.children))
        return out

    def tags_by_digest(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t, d in self.tags.items():
            out.setdefault(d, []).append(t)
        return out

    def signature_tags(self) -> dict[str, list[tuple[str, str]]]:
        """subject digest -> [(tag, kind)] for cosign-style tags in this repository."""
        out: dict[str, list[tuple[str, str]]] = {}
        for t in self.tags:
            s = signature_subject(t)
            if s:
                out.setdefault(s[0], []).append((t, s[1]))
        return out


@dataclass(slots=True)
class Inventory:
    registry: str
    scanned_at: datetime
    repositories: dict[str, RepoInventory] = field(default_factory=dict)
    push_time_source: str = "none"  # "filesystem" | "s3" | "none"
    stats: dict = field(default_factory=dict)  # scan counters (requests, cache hits, seconds)

    def merge(self, other: "Inventory") -> "Inventory":
        """Fold a batch's inventory into this one (batches scan disjoint repositories)."""
        self.repositories.update(other.repositories)
        for k, v in (other.stats or {}).items():
            if isinstance(v, str):  # referrers_mode: a known mode wins over "unknown"
                if self.stats.get(k) in (None, "unknown"):
                    self.stats[k] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                self.stats[k] = self.stats.get(k, 0) + v
            elif isinstance(v, dict):
                agg = self.stats.setdefault(k, {})
                for kk, vv in v.items():
                    agg[kk] = agg.get(kk, 0) + vv
        if other.push_time_source != "none":
            self.push_time_source = other.push_time_source
        return self

    @property
    def tag_count(self) -> int:
        return sum(len(r.tags) for r in self.repositories.values())

    def rows(self) -> list[dict]:
        """One row per tag, for tables, CSV and JSON. A referrer's row names its subject, its
        artifact type and how it was discovered; a fallback index tag's row its subject."""
        rows = []
        for repo in sorted(self.repositories):
            r = self.repositories[repo]
            links = r.referrer_of()
            for tag in sorted(r.tags):
                d = r.tags[tag]
                m = r.manifests.get(d)
                sig = signature_subject(tag)
                link = links.get(d)
                row = {
                    "repository": repo,
                    "tag": tag,
                    "digest": d,
                    "kind": m.kind if m else None,
                    "media_type": m.media_type if m else None,
                    "created": m.created.isoformat() if m and m.created else None,
                    "pushed": r.push_times[tag].isoformat() if tag in r.push_times else None,
                    "size": (m.size + m.blob_bytes) if m else None,
                    "platforms": ",".join(m.platforms) if m and m.platforms else "",
                    "children": len(m.children) if m else 0,
                    "signature_of": sig[0] if sig else "",
                    "subject": link.subject if link else "",
                    "referrer_type": link.artifact_type if link else "",
                    "discovered_by": link.discovered_by if link else "",
                }
                if link is None and sig and sig[1] == "referrers":
                    row.update(subject=sig[0], referrer_type=FALLBACK_INDEX, discovered_by="tag-schema")
                rows.append(row)
        return rows

    def to_dataframe(self):
        import pandas as pd

        cols = [
            "repository",
            "tag",
            "digest",
            "kind",
            "media_type",
            "created",
            "pushed",
            "size",
            "platforms",
            "children",
            "signature_of",
            "subject",
            "referrer_type",
            "discovered_by",
        ]
        return pd.DataFrame(self.rows(), columns=cols)

    def to_csv(self, path_or_buf=None):
        return self.to_dataframe().to_csv(path_or_buf, index=False)

    def to_json(self) -> str:
        def enc(o):
            if isinstance(o, datetime):
                return o.isoformat()
            raise TypeError(type(o))

        return json.dumps(
            {
                "registry": self.registry,
                "scanned_at": self.scanned_at.isoformat(),
                "push_time_source": self.push_time_source,
                "referrers_mode": self.stats.get("referrers_mode", "unknown"),
                "repositories": {k: _repo_json(v) for k, v in self.repositories.items()},
            },
            default=enc,
            indent=1,
        )


FALLBACK_INDEX = "referrers-index"  # the referrer_type shown for a sha256-<hex> fallback index


def _repo_json(r: RepoInventory) -> dict:
    """A repository as JSON: every manifest says what it refers to (``subject``,
    ``referrer_type``, ``discovered_by``; cosign tags included) and lists its own
    ``referrers`` (and its fallback index, ``referrers_index``)."""
    out = asdict(r)
    links = r.referrer_of()
    indexes = {d: s for s, d in r.fallback_indexes.items()}
    for digest, m in out["manifests"].items():
        link = links.get(digest)
        m["subject"] = link.subject if link else (indexes.get(digest) or m["subject"])
        m["referrer_type"] = link.artifact_type if link else (FALLBACK_INDEX if digest in indexes else None)
        m["discovered_by"] = link.discovered_by if link else ("tag-schema" if digest in indexes else None)
        m["referrers"] = [ref.as_dict() for ref in r.referrers.get(digest, ())]
        m["referrers_index"] = r.fallback_indexes.get(digest)
    out["referrers"] = {s: [ref.as_dict() for ref in refs] for s, refs in r.referrers.items()}
    return out
