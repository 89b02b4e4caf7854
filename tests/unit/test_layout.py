"""The layout rules of ARCHITECTURE.md, checked: a Prefect-free core, no module over 400 lines,
no function over 80, one module that sends DELETE to a registry, one that owns the mount quirk."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("regkeeper", "tasks", "flows", "app")
MAX_MODULE, MAX_FUNC = 400, 80


def _modules(*packages: str):
    for pkg in packages:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_no_module_over_400_lines():
    long = {_rel(f): n for f in _modules(*PACKAGES) if (n := len(f.read_text().splitlines())) > MAX_MODULE}
    assert long == {}


def test_no_function_over_80_lines():
    long = []
    for f in _modules(*PACKAGES):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNC:
                    long.append(f"{_rel(f)}:{node.lineno} {node.name}() {n} lines")
    assert long == []


def test_the_core_imports_no_prefect_tasks_flows_or_app():
    bad = []
    for f in _modules("regkeeper"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            bad += [
                f"{_rel(f)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("prefect", "tasks", "flows", "app")
            ]
    assert bad == []


def test_no_future_annotations_in_flows():
    # Prefect builds parameter schemas from the annotations: postponed ones break that
    assert [_rel(f) for f in _modules("flows") if "from __future__ import annotations" in f.read_text()] == []


def _grep(pattern: str, *packages: str) -> set[str]:
    rx = re.compile(pattern)
    return {_rel(f) for f in _modules(*packages) if rx.search(f.read_text())}


def test_one_module_sends_delete_to_a_registry():
    assert _grep(r"""request\(\s*["']DELETE["']""", "regkeeper", "tasks", "flows") == {
        "regkeeper/oci/client.py"
    }


def test_one_module_implements_the_mount_quirk():
    assert _grep(r"mount=", "regkeeper", "tasks", "flows") == {"regkeeper/oci/client.py"}
    assert _grep(r"\.mount_blob\(", "regkeeper", "tasks", "flows") == {"regkeeper/oci/transfer.py"}
