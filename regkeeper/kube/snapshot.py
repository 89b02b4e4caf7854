"""Recorded snapshots: in-use images from saved list responses instead of a live cluster.

:func:`load_snapshot` reads JSON/YAML files (one list response, a ``kind: List`` as
``kubectl get ... -A -o json`` prints it, a mapping of list responses, a ``{"contexts": ...}``
mapping, or a saved :class:`InUseScan`), or directories of them (one context per
sub-directory), through the same extraction code as the live reader. A file that cannot be
read or understood raises :class:`KubeSnapshotError` naming it; an object of the wrong shape in
it fails its context, the reason naming the file, the object (kind, namespace/name) and the field.
"""

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import KubeSnapshotError
from .collect import _Collector
from .inuse import SCAN_FORMAT, ContextError, InUseScan
from .workloads import _BY_KIND, _BY_LIST_KIND, json_type

_SNAPSHOT_SUFFIXES = (".json", ".yaml", ".yml")


def _read_docs(path: Path, substitutions: Mapping[str, str] | None) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KubeSnapshotError(f"cannot read Kubernetes snapshot {path}: {e.strerror or e}") from None
    for k, v in (substitutions or {}).items():
        text = text.replace(k, v)
    try:
        if path.suffix.lower() == ".json":
            return [json.loads(text)]
        import yaml

        return [d for d in yaml.safe_load_all(text) if d is not None]
    except Exception as e:  # noqa: BLE001 - json.JSONDecodeError, yaml.YAMLError
        raise KubeSnapshotError(
            f"Kubernetes snapshot {path} is not valid {path.suffix.lstrip('.').upper()}: "
            f"{str(e).splitlines()[0][:200]}"
        ) from None


class _Contexts:
    """What the documents of a snapshot hold, per context: a collector and object counts."""

    def __init__(self) -> None:
        self.cols: dict[str, _Collector] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def add_doc(self, doc, path: Path, context: str, where: str = "") -> None:
        """One document: a *List, a kind: List, a single object, or {resource: List, ...}."""
        if not isinstance(doc, dict):
            raise KubeSnapshotError(
                f"Kubernetes snapshot {path}{where}: expected an object, got {type(doc).__name__}"
            )
        kind = doc.get("kind")
        self.cols.setdefault(context, _Collector(context))
        self.counts.setdefault(context, {})
        origin = f"Kubernetes snapshot {path}{where}: "
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            self._add_list(doc, kind, context, origin)
        elif isinstance(kind, str) and "metadata" in doc:
            self._add_object(context, kind, doc, None, origin)
        else:
            self._add_mapping(doc, path, context, where)

    def _add_list(self, doc: dict, kind: str, context: str, origin: str) -> None:
        default_kind = kind[:-4] if kind != "List" else None
        items = doc.get("items") or []
        if not isinstance(items, (list, tuple)):
            raise KubeSnapshotError(f"{origin}items is {json_type(items)}, expected a list")
        for i, item in enumerate(items):
            item_kind = item.get("kind") if isinstance(item, Mapping) else None
            self._add_object(context, item_kind or default_kind, item, i, origin)
        if _BY_LIST_KIND.get(kind) is not None:
            self.counts[context].setdefault(_BY_LIST_KIND[kind].plural, 0)

    def _add_object(self, context: str, kind, obj, index: int | None, origin: str) -> None:
        col = self.cols[context]
        if not isinstance(obj, Mapping):
            col.add_object(kind if isinstance(kind, str) else "List", obj, index, origin)  # malformed
            return
        if not isinstance(kind, str) or not kind:  # an item of a kind: List that does not say what it is
            where = f"items[{index}]" if index is not None else "object"
            what = "missing" if kind in (None, "") else f"{json_type(kind)}, expected a string"
            col.malformed.append(f"{origin}{where}: kind is {what}")
            return
        res = _BY_KIND.get(kind)
        if res is None and not _has_pod_template(obj):
            return  # Services, ConfigMaps...: no images
        col.add_object(kind, obj, index, origin)
        key = res.plural if res else kind.lower()
        cnt = self.counts[context]
        cnt[key] = cnt.get(key, 0) + 1

    def _add_mapping(self, doc: dict, path: Path, context: str, where: str) -> None:
        """{resource plural or kind: List, ...}"""
        matched = False
        for key, val in doc.items():
            if isinstance(val, dict) and ("items" in val or "kind" in val):
                matched = True
                self.add_doc(val, path, context, f"{where}[{key}]")
        if not matched:
            keys = ", ".join(map(str, list(doc)[:8]))
            raise KubeSnapshotError(
                f"Kubernetes snapshot {path}{where}: not a list response, an object, "
                f"or a mapping of list responses (keys: {keys})"
            )

    def scan(self, source: str) -> InUseScan:
        """The scan: a context with a malformed object is failed (its readable objects still count)."""
        scan = InUseScan(source=source)
        for ctx, col in self.cols.items():
            scan.refs.extend(col.refs)
            scan.invalid.extend(col.invalid)
            if col.malformed:
                scan.errors.append(ContextError(ctx, col.malformed_reason()))
            else:
                scan.contexts_read.append(ctx)
            scan.objects[ctx] = self.counts.get(ctx, {})
        return scan


def _has_pod_template(obj: Mapping) -> bool:
    """An unknown kind is read when it carries a pod template (``spec.template.spec``)."""
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    return isinstance(template, Mapping) and bool(template.get("spec"))


def load_snapshot(
    path: "str | os.PathLike", *, context: str | None = None, substitutions: Mapping[str, str] | None = None
) -> InUseScan:
    """Build an :class:`InUseScan` from recorded API responses instead of a live cluster.

    ``path`` may be:

    * a JSON/YAML file holding one list response (``PodList``...), a ``kind: List`` of mixed
      objects (``kubectl get pods,deploy,sts,ds,rs,jobs,cronjobs -A -o json``), a mapping of
      such responses (``{"pods": {...PodList}, "deployments": {...}}``), a mapping
      ``{"contexts": {"prod": {...}, "staging": {...}}}``, or a saved scan (``to_json()``);
    * a directory of such files (one context), or of sub-directories (one context each, named
      after the sub-directory).

    ``substitutions`` replaces placeholders (e.g. ``{{REGISTRY}}``) in the raw text first.
    Objects are parsed by the same code as live list responses. A file that cannot be read
    raises :class:`KubeSnapshotError`; a malformed object fails its context (in ``.errors``).
    """
    t0 = time.monotonic()
    p = Path(path).expanduser()
    if not p.exists():
        raise KubeSnapshotError(f"Kubernetes snapshot not found: {p}")
    contexts = _Contexts()
    default_ctx = context or f"snapshot:{p.name}"
    if p.is_dir():
        _read_dir(contexts, p, default_ctx, substitutions)
    else:
        docs = _read_docs(p, substitutions)
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("format") == SCAN_FORMAT:
            return _saved_scan(docs[0], p)
        for doc in docs:
            if isinstance(doc, dict) and isinstance(doc.get("contexts"), dict) and "kind" not in doc:
                for ctx, sub in doc["contexts"].items():
                    contexts.add_doc(sub, p, str(ctx), f"[contexts][{ctx}]")
            else:
                contexts.add_doc(doc, p, default_ctx)
    scan = contexts.scan(f"snapshot:{p}")
    scan.duration_seconds = time.monotonic() - t0
    return scan


def _files_in(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in _SNAPSHOT_SUFFIXES)


def _read_dir(
    contexts: _Contexts, d: Path, default_ctx: str, substitutions: Mapping[str, str] | None
) -> None:
    """Files at the top are one context; each sub-directory with files is a context of its own."""
    top = _files_in(d)
    subdirs = sorted(x for x in d.iterdir() if x.is_dir() and _files_in(x))
    if not top and not subdirs:
        raise KubeSnapshotError(f"Kubernetes snapshot directory {d} holds no .json/.yaml files")
    for f in top:
        for doc in _read_docs(f, substitutions):
            contexts.add_doc(doc, f, default_ctx)
    for sub in subdirs:
        for f in _files_in(sub):
            for doc in _read_docs(f, substitutions):
                contexts.add_doc(doc, f, sub.name)


def _saved_scan(doc: dict, path: Path) -> InUseScan:
    try:
        return InUseScan.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KubeSnapshotError(
            f"Kubernetes snapshot {path} is a saved scan that cannot be read: "
            f"{type(e).__name__}: {str(e)[:200]}"
        ) from None
