"""From API objects to references: the step shared by the live reader and snapshots.

A :class:`_Collector` gathers what one listing (one context and resource, or one snapshot
context) yields: valid references with their source, invalid strings (reported, never matched),
bare image IDs in container statuses (skipped: they name no repository), and malformed objects.
A malformed object (a field of the wrong JSON type) cannot be read, so regkeeper cannot know
what it uses: it is recorded with its kind, namespace/name and field path, and the caller fails
the context (fail-closed then refuses to delete).
"""

from collections.abc import Mapping

from .inuse import InUseSource, InvalidRef
from .refs import ImageRef, _is_image_id_only, _parse_cached
from .workloads import (
    MalformedObjectError,
    _as_object,
    _as_string,
    extract_images,
    json_type,
)

_SHOWN_MALFORMED = 3  # problems spelled out in one reason; the rest are counted


class _Collector:
    """Refs of one (context, resource) listing; merged into the scan only when complete."""

    __slots__ = ("context", "refs", "invalid", "count", "image_ids_skipped", "malformed")

    def __init__(self, context: str):
        self.context = context
        self.refs: list[tuple[ImageRef, InUseSource]] = []
        self.invalid: list[InvalidRef] = []
        self.count = 0
        self.image_ids_skipped = 0
        self.malformed: list[str] = []  # "Deployment team-a/web: spec.template is a list, expected ..."

    def add_object(self, kind: str, obj: Mapping, index: int | None = None, origin: str = "") -> None:
        """Read one object. ``index``: its position in the list (names an object without a
        name); ``origin``: what to put before the object in a problem (the snapshot file)."""
        self.count += 1
        if not isinstance(obj, Mapping):
            where = f"items[{index}]" if index is not None else "object"
            self.malformed.append(f"{origin}{kind} {where} is {json_type(obj)}, expected an object")
            return
        try:
            found = self._sources(kind, obj)
        except MalformedObjectError as e:
            self.malformed.append(f"{origin}{describe_object(kind, obj, index)}: {e}")
            return
        for value, src in found:
            try:
                ref = _parse_cached(value)
            except ValueError as e:
                if src.field.endswith(".imageID") and _is_image_id_only(value):
                    self.image_ids_skipped += 1
                else:
                    self.invalid.append(InvalidRef(value, src, str(e)))
                continue
            self.refs.append((ref, src))

    def _sources(self, kind: str, obj: Mapping) -> list[tuple[str, InUseSource]]:
        """Every image string of the object with its source; all or nothing (raises when malformed)."""
        meta = _as_object(obj.get("metadata"), "metadata")
        ns = _as_string(meta.get("namespace"), "metadata.namespace")
        name = _as_string(meta.get("name"), "metadata.name")
        ctx = self.context
        return [
            (value, InUseSource(ctx, ns, kind, name, container, fld))
            for value, container, fld in extract_images(kind, obj)
        ]

    def malformed_reason(self) -> str:
        """The malformed objects in one line: the first few, and how many more."""
        reason = "; ".join(self.malformed[:_SHOWN_MALFORMED])
        more = len(self.malformed) - _SHOWN_MALFORMED
        if more > 0:
            reason += f" (and {more} more malformed object{'s' if more != 1 else ''})"
        return reason


def describe_object(kind: str, obj: Mapping, index: int | None = None) -> str:
    """``Deployment team-a/web`` (``Deployment web`` without a namespace), as far as the
    metadata can be read; ``Deployment items[3]`` when the object has no readable name."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    if isinstance(name, str) and name:
        return f"{kind} {ns}/{name}" if isinstance(ns, str) and ns else f"{kind} {name}"
    return f"{kind} items[{index}]" if index is not None else f"{kind} (no metadata.name)"
