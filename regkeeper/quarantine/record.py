"""The quarantine record: what a run held, kept in the registry itself (it works on any OCI
registry and survives losing the state directory).

For each (run, original repository) one OCI image index is PUT under
``<namespace>/<original repository>``, tagged with the run id. Its ``manifests[]`` are the held
manifests (the deleted ones: images, indexes, children, referrers), each annotated with where it
came from (original repository, tags, run, time, rule, reason); the index's own annotations say
the run, the time and the bytes the held closure occupies. The held manifests themselves sit
untagged in the same quarantine repository (PUT by digest), so the registry's garbage-collect
keeps every blob they use.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..errors import RegistryError
from ..oci.mediatypes import OCI_INDEX

PREFIX = "io.regkeeper.quarantine."
A_REPOSITORY = PREFIX + "repository"
A_TAGS = PREFIX + "tags"
A_RUN = PREFIX + "run"
A_TIME = PREFIX + "time"
A_RULE = PREFIX + "rule"
A_REASON = PREFIX + "reason"
A_BYTES = PREFIX + "bytes"
A_REGISTRY = PREFIX + "registry"

_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def run_tag(run: str) -> str:
    """The record's tag for a run id (a valid OCI tag: at most 128 characters)."""
    t = _TAG_BAD.sub("-", run).lstrip(".-") or "run"
    return t[:128]


def quarantine_repo(namespace: str, repo: str) -> str:
    return f"{namespace}/{repo}"


def in_namespace(repo: str, namespace: str | None) -> bool:
    """Whether ``repo`` is a quarantine repository (every other job leaves it alone)."""
    if not namespace:
        return False
    return repo == namespace or repo.startswith(namespace + "/")


def original_repo(namespace: str, qrepo: str) -> str:
    return qrepo[len(namespace) + 1 :]


@dataclass(slots=True)
class Entry:
    """One held manifest: digest, media type, size and where it came from."""

    digest: str
    media_type: str
    size: int
    tags: tuple[str, ...] = ()
    rule: str = ""
    reason: str = ""

    def descriptor(self, repo: str, run: str, time: datetime) -> dict:
        ann = {A_REPOSITORY: repo, A_RUN: run, A_TIME: _iso(time), A_TAGS: ",".join(self.tags)}
        if self.rule:
            ann[A_RULE] = self.rule
        if self.reason:
            ann[A_REASON] = self.reason[:500]
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "annotations": ann}


@dataclass(slots=True)
class Record:
    """The held manifests of one run from one original repository."""

    repository: str  # the original repository
    run: str
    time: datetime
    entries: list[Entry] = field(default_factory=list)
    bytes_held: int = 0  # manifests + blobs of the held closure (each once)
    registry: str = ""
    digest: str | None = None  # of the record index, when read from the registry

    def release_at(self, window: timedelta) -> datetime:
        return self.time + window

    def to_bytes(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [e.descriptor(self.repository, self.run, self.time) for e in self.entries],
            "annotations": {
                A_REPOSITORY: self.repository,
                A_RUN: self.run,
                A_TIME: _iso(self.time),
                A_BYTES: str(self.bytes_held),
                A_REGISTRY: self.registry,
            },
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def merged(self, other: "Record") -> "Record":
        """This record with ``other``'s entries added (the same run held that repository twice)."""
        have = {e.digest for e in self.entries}
        extra = [e for e in other.entries if e.digest not in have]
        return Record(
            self.repository,
            self.run,
            min(self.time, other.time),
            self.entries + extra,
            self.bytes_held + other.bytes_held,
            self.registry or other.registry,
        )

    def without(self, digests: Iterable[str]) -> "Record":
        gone = set(digests)
        kept = [e for e in self.entries if e.digest not in gone]
        return Record(self.repository, self.run, self.time, kept, self.bytes_held, self.registry)


def parse_record(raw: bytes, where: str) -> Record:
    """A record index read back from the registry; a document that is not one raises
    RegistryError naming ``where`` (repository:tag)."""
    try:
        doc = json.loads(raw)
        ann = doc.get("annotations") or {}
        entries = []
        for d in doc.get("manifests") or []:
            a = d.get("annotations") or {}
            tags = tuple(t for t in (a.get(A_TAGS) or "").split(",") if t)
            entries.append(
                Entry(
                    d["digest"], d["mediaType"], int(d["size"]), tags, a.get(A_RULE, ""), a.get(A_REASON, "")
                )
            )
        return Record(
            ann[A_REPOSITORY],
            ann[A_RUN],
            datetime.fromisoformat(ann[A_TIME]),
            entries,
            int(ann.get(A_BYTES) or 0),
            ann.get(A_REGISTRY, ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RegistryError(f"{where}: not a regkeeper quarantine record ({type(e).__name__}: {e})") from None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")
