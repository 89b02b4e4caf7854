"""The run reports a test reads back, in the order the runs started.

A run's files are ``<started, to the second>-<slug>.*`` and a second run in the same second is
``<stamp>.02-<slug>.*``, so names sort in run order per slug; across slugs, and for the reader
of any directory, the JSON's ``started`` (to the microsecond) is the order, as
``reports/index.html`` uses.
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
