"""From API objects to references: the step shared by the live reader and snapshots.

A :class:`_Collector` gathers what one listing (one context and resource, or one snapshot
context) yields: valid references with their source, invalid strings (reported, never matched),
and bare image IDs in container statuses (skipped: they name no repository).
"""

from collections.abc import Mapping

from .inuse import InUseSource, InvalidRef
from .refs import ImageRef, _is_image_id_only, _parse_cached
from .workloads import extract_images


class _Collector:
    """Refs of one (context, resource) listing; merged into the scan only when complete."""

    __slots__ = ("context", "refs", "invalid", "count", "image_ids_skipped")

    def __init__(self, context: str):
        self.context = context
        self.refs: list[tuple[ImageRef, InUseSource]] = []
        self.invalid: list[InvalidRef] = []
        self.count = 0
        self.image_ids_skipped = 0

    def add_object(self, kind: str, obj: Mapping) -> None:
        self.count += 1
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ""
        name = meta.get("name") or ""
        for value, container, fld in extract_images(kind, obj):
            src = InUseSource(self.context, ns, kind, name, container, fld)
            if not isinstance(value, str):
                self.invalid.append(InvalidRef(repr(value), src, "not a string"))
                continue
            try:
                ref = _parse_cached(value)
            except ValueError as e:
                if fld.endswith(".imageID") and _is_image_id_only(value):
                    self.image_ids_skipped += 1
                else:
                    self.invalid.append(InvalidRef(value, src, str(e)))
                continue
            self.refs.append((ref, src))
