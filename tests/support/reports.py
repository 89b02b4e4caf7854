"""The run reports a test reads back, in the order the runs started.

Not by file name: a run's files are ``<started, to the second>-<slug>.*``, and a second run in
the same second is ``...-<slug>-2.*``, which sorts BEFORE the first (``-`` < ``.``): a test that
took the last name as the latest run read the previous one whenever two runs shared a second.
The JSON's ``started`` (to the microsecond) orders them, as ``reports/index.html`` does.
"""

import json
from pathlib import Path

__all__ = ["report_docs"]


def report_docs(directory: str | Path, pattern: str = "*.json") -> list[dict]:
    """Every report JSON under ``directory`` matching ``pattern``, oldest run first; each dict
    also has ``_path`` (its JSON file). Files that are not a run's report are left out."""
    docs = []
    for p in Path(directory).glob(pattern):
        doc = json.loads(p.read_text())
        if isinstance(doc, dict) and "started" in doc:
            docs.append(doc | {"_path": p})
    return sorted(docs, key=lambda d: (d["started"], str(d["_path"])))
