"""Manifest parsing: descriptors, typed manifests (image, index, artifact), the HEAD answer.

Every manifest regkeeper reads goes through ``parse_manifest`` (or ``manifest_from_doc`` when
the JSON is already decoded): Docker schema1 is refused clearly, a malformed document raises
UnsupportedManifestError naming the digest instead of a bare KeyError/TypeError.
"""

import json
from dataclasses import dataclass, field
from typing import Literal

from ..errors import UnsupportedManifestError
from .mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    IMAGE_CONFIG_TYPES,
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

CREATED_ANNOTATION = "org.opencontainers.image.created"

ManifestKind = Literal["image", "index", "artifact"]


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None  # "linux/arm64/v8" for index children
    artifact_type: str | None = None
    annotations: dict | None = None

    @classmethod
    def from_json(cls, d: dict) -> "Descriptor":
        plat = d.get("platform")
        p = None
        if isinstance(plat, dict):
            p = "/".join(x for x in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if x)
        return cls(
            media_type=d.get("mediaType", ""),
            digest=d["digest"],
            size=int(d.get("size", 0)),
            platform=p,
            artifact_type=d.get("artifactType"),
            annotations=d.get("annotations") or None,
        )


@dataclass(slots=True)
class Manifest:
    """A parsed manifest (image or index) with the raw bytes it was parsed from."""

    digest: str
    media_type: str
    kind: ManifestKind
    raw: bytes
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict = field(default_factory=dict)
    artifact_type: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    def blob_descriptors(self) -> list[Descriptor]:
        """Config + layers (not children: those are manifests)."""
        out = []
        if self.config is not None:
            out.append(self.config)
        out.extend(self.layers)
        return out

    def referenced_manifests(self) -> list[str]:
        return [c.digest for c in self.children]


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a manifest HEAD tells: digest, media type and size."""

    digest: str
    media_type: str
    size: int


def parse_manifest(raw: bytes, digest: str, media_type: str | None = None) -> Manifest:
    """Parse manifest bytes into a typed Manifest. Schema1 gets a clear error."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise UnsupportedManifestError(f"manifest {digest} is not JSON") from None
    return manifest_from_doc(doc, raw, digest, media_type)


def manifest_from_doc(doc, raw: bytes, digest: str, media_type: str | None = None) -> Manifest:
    """A Manifest from its decoded JSON ``doc`` (and the ``raw`` bytes it was decoded from)."""
    if not isinstance(doc, dict):
        raise UnsupportedManifestError(f"manifest {digest} is not a JSON object")
    mt = doc.get("mediaType") or media_type or ""
    if doc.get("schemaVersion") == 1 or mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifestError(
            f"manifest {digest} is Docker schema1 (deprecated, unsupported): re-push it with a "
            "current client to convert it to schema2"
        )
    try:
        if "manifests" in doc or mt in INDEX_MEDIA_TYPES:
            return _index(doc, raw, digest, mt)
        if "config" not in doc and "layers" not in doc:
            raise UnsupportedManifestError(f"manifest {digest} has neither config/layers nor manifests")
        return _image(doc, raw, digest, mt)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UnsupportedManifestError(f"manifest {digest} is malformed ({type(e).__name__}: {e})") from None


def _annotations(doc: dict) -> dict:
    a = doc.get("annotations")
    return a if isinstance(a, dict) else {}


def _subject(doc: dict) -> Descriptor | None:
    return Descriptor.from_json(doc["subject"]) if isinstance(doc.get("subject"), dict) else None


def _index(doc: dict, raw: bytes, digest: str, mt: str) -> Manifest:
    return Manifest(
        digest=digest,
        media_type=mt or OCI_INDEX,
        kind="index",
        raw=raw,
        children=[Descriptor.from_json(d) for d in doc.get("manifests") or []],
        subject=_subject(doc),
        annotations=_annotations(doc),
        artifact_type=doc.get("artifactType"),
    )


def _image(doc: dict, raw: bytes, digest: str, mt: str) -> Manifest:
    config = Descriptor.from_json(doc["config"]) if isinstance(doc.get("config"), dict) else None
    layers = [Descriptor.from_json(d) for d in doc.get("layers") or []]
    artifact_type = doc.get("artifactType")
    kind: ManifestKind = "image"
    if artifact_type or (config is not None and config.media_type not in IMAGE_CONFIG_TYPES):
        kind = "artifact"
    mt = mt or (OCI_MANIFEST if "artifactType" in doc else DOCKER_MANIFEST)
    return Manifest(
        digest=digest,
        media_type=mt,
        kind=kind,
        raw=raw,
        config=config,
        layers=layers,
        subject=_subject(doc),
        annotations=_annotations(doc),
        artifact_type=artifact_type,
    )
