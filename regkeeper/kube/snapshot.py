"""Recorded snapshots: in-use images from saved list responses instead of a live cluster.

:func:`load_snapshot` reads JSON/YAML files (one list response, a ``kind: List`` as
``kubectl get ... -A -o json`` prints it, a mapping of list responses, a ``{"contexts": ...}``
mapping, or a saved :class:`InUseScan`), or directories of them (one context per
sub-directory), through the same extraction code as the live reader. Every problem names the
file (:class:`KubeSnapshotError`).
"""

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import RegkeeperError
from .collect import _Collector
from .inuse import SCAN_FORMAT, InUseScan
from .workloads import _BY_KIND, _BY_LIST_KIND


class KubeSnapshotError(RegkeeperError):
    """A recorded snapshot file could not be read or understood (names the file and why)."""


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
        raise KubeSnapshotError(f"Kubernetes snapshot {path} is not valid {path.suffix.lstrip('.').upper()}: "
                                f"{str(e).splitlines()[0][:200]}") from None


def _add_doc(doc, path: Path, context: str, cols: dict[str, _Collector], counts: dict[str, dict[str, int]],
             where: str) -> None:
    """Feed one document (a *List, a kind: List, a single object, or {resource: List}) to collectors."""
    if not isinstance(doc, dict):
        raise KubeSnapshotError(f"Kubernetes snapshot {path}{where}: expected an object, "
                                f"got {type(doc).__name__}")
    kind = doc.get("kind")
    col = cols.setdefault(context, _Collector(context))
    cnt = counts.setdefault(context, {})

    def add(k, obj):
        if not isinstance(obj, dict):
            return
        res = _BY_KIND.get(k)
        if res is None and not ((obj.get("spec") or {}).get("template") or {}).get("spec"):
            return   # Services, ConfigMaps...: no images
        col.add_object(k, obj)
        key = res.plural if res else k.lower()
        cnt[key] = cnt.get(key, 0) + 1

    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        default_kind = kind[:-4] if kind != "List" else None
        for item in doc.get("items") or []:
            if isinstance(item, dict):
                add(item.get("kind") or default_kind, item)
        if _BY_LIST_KIND.get(kind) is not None:
            cnt.setdefault(_BY_LIST_KIND[kind].plural, 0)
        return
    if isinstance(kind, str) and "metadata" in doc:
        add(kind, doc)
        return
    # {resource plural or kind: List, ...}
    matched = False
    for key, val in doc.items():
        if isinstance(val, dict) and ("items" in val or "kind" in val):
            matched = True
            _add_doc(val, path, context, cols, counts, f"{where}[{key}]")
    if not matched:
        keys = ", ".join(map(str, list(doc)[:8]))
        raise KubeSnapshotError(f"Kubernetes snapshot {path}{where}: not a list response, an object, "
                                f"or a mapping of list responses (keys: {keys})")


def load_snapshot(path: "str | os.PathLike", *, context: str | None = None,
                  substitutions: Mapping[str, str] | None = None) -> InUseScan:
    """Build an :class:`InUseScan` from recorded API responses instead of a live cluster.

    ``path`` may be:

    * a JSON/YAML file holding one list response (``PodList``...), a ``kind: List`` of mixed
      objects (``kubectl get pods,deploy,sts,ds,rs,jobs,cronjobs -A -o json``), a mapping of
      such responses (``{"pods": {...PodList}, "deployments": {...}}``), a mapping
      ``{"contexts": {"prod": {...}, "staging": {...}}}``, or a saved scan (``to_json()``);
    * a directory of such files (one context), or of sub-directories (one context each, named
      after the sub-directory).

    ``substitutions`` replaces placeholders (e.g. ``{{REGISTRY}}``) in the raw text first.
    Objects are parsed by the same code as live list responses.
    """
    t0 = time.monotonic()
    p = Path(path).expanduser()
    if not p.exists():
        raise KubeSnapshotError(f"Kubernetes snapshot not found: {p}")
    cols: dict[str, _Collector] = {}
    counts: dict[str, dict[str, int]] = {}
    default_ctx = context or f"snapshot:{p.name}"

    def files_in(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in _SNAPSHOT_SUFFIXES)

    if p.is_dir():
        top = files_in(p)
        subdirs = sorted(d for d in p.iterdir() if d.is_dir() and files_in(d))
        if not top and not subdirs:
            raise KubeSnapshotError(f"Kubernetes snapshot directory {p} holds no .json/.yaml files")
        for f in top:
            for doc in _read_docs(f, substitutions):
                _add_doc(doc, f, default_ctx, cols, counts, "")
        for d in subdirs:
            for f in files_in(d):
                for doc in _read_docs(f, substitutions):
                    _add_doc(doc, f, d.name, cols, counts, "")
    else:
        docs = _read_docs(p, substitutions)
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("format") == SCAN_FORMAT:
            return InUseScan.from_dict(docs[0])
        for doc in docs:
            if isinstance(doc, dict) and isinstance(doc.get("contexts"), dict) and "kind" not in doc:
                for ctx, sub in doc["contexts"].items():
                    _add_doc(sub, p, str(ctx), cols, counts, f"[contexts][{ctx}]")
            else:
                _add_doc(doc, p, default_ctx, cols, counts, "")

    scan = InUseScan(source=f"snapshot:{p}")
    for ctx, col in cols.items():
        scan.refs.extend(col.refs)
        scan.invalid.extend(col.invalid)
        scan.contexts_read.append(ctx)
        scan.objects[ctx] = counts.get(ctx, {})
    scan.duration_seconds = time.monotonic() - t0
    return scan
