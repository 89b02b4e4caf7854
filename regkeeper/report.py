"""One report writer for every flow.

A run's Report holds a status, key figures, notes, and named tables. It renders to:
- ``reports/<flow>/<timestamp>-<registry>.csv``   (the main table, e.g. per-tag decisions)
- ``reports/<flow>/<timestamp>-<registry>.html``  (summary + every table + optional extra HTML)
- ``reports/<flow>/<timestamp>-<registry>.json``  (summary, notes, table sizes: for tooling)
- ``reports/index.html``                          (links the latest run of each flow)
- markdown for a Prefect artifact (summary + the first rows of the main table)

Reports never contain secrets: they are built from inventory data, and free text goes through
``util.scrub``.
"""

import csv
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .util import atomic_write, human_bytes, scrub, utcnow


@dataclass
class Table:
    name: str
    rows: list[dict]
    columns: list[str] | None = None

    def cols(self) -> list[str]:
        if self.columns:
            return self.columns
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                seen.setdefault(k, None)
        return list(seen)


@dataclass
class Report:
    flow: str
    registry: str
    status: str = "ok"  # ok | dry-run | failed | refused
    started: datetime = field(default_factory=utcnow)
    finished: datetime | None = None
    title: str | None = None
    summary: dict = field(default_factory=dict)  # key figures, in display order
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    extra_html: str = ""  # e.g. an inline SVG chart
    paths: dict = field(default_factory=dict)
    key: str | None = None  # artifact key override (e.g. replication-<target>)

    # ------------------------------------------------------------------ building

    def note(self, text: str) -> None:
        self.notes.append(scrub(str(text)))

    def add_table(self, name: str, rows: list[dict], columns: list[str] | None = None) -> Table:
        t = Table(name, rows, columns)
        self.tables.append(t)
        return t

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9-]+", "-", self.registry.lower()).strip("-") or "registry"

    @property
    def artifact_key(self) -> str:
        """Prefect artifact keys: lowercase letters, numbers and dashes."""
        return re.sub(r"[^a-z0-9-]+", "-", (self.key or f"{self.flow}-{self.registry}").lower()).strip("-")

    def finish(self, status: str | None = None) -> "Report":
        if status:
            self.status = status
        self.finished = utcnow()
        return self

    # ------------------------------------------------------------------ rendering

    def markdown(self, max_rows: int = 50) -> str:
        lines = [
            f"# {self.title or self.flow} — {self.registry}",
            "",
            f"**Status:** {self.status}  ",
            f"**Started:** {self.started:%Y-%m-%d %H:%M:%S} UTC",
            "",
        ]
        if self.summary:
            lines += ["| | |", "|---|---|"]
            for k, v in self.summary.items():
                lines.append(f"| {_md(k)} | {_md(_fmt(k, v))} |")
            lines.append("")
        for n in self.notes:
            lines.append(f"- {_md(n)}")
        if self.notes:
            lines.append("")
        for t in self.tables[:2]:
            if not t.rows:
                continue
            cols = t.cols()
            lines += [
                f"## {t.name} ({len(t.rows)} rows)",
                "",
                "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols),
            ]
            for r in t.rows[:max_rows]:
                lines.append("| " + " | ".join(_md(_fmt(c, r.get(c))) for c in cols) + " |")
            if len(t.rows) > max_rows:
                lines.append(f"\n… {len(t.rows) - max_rows} more rows in the CSV report")
            lines.append("")
        if self.paths:
            lines.append("Report files: " + ", ".join(f"`{p}`" for p in self.paths.values()))
        return "\n".join(lines)

    def html(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.flow)} {e(self.registry)} {self.started:%Y-%m-%d %H:%M}</title>",
            "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
            "th{background:#f3f3f3}.ok{color:#187a2f}.failed,.refused{color:#b00020}"
            ".dry-run{color:#8a6d00}</style></head><body>",
            f"<h1>{e(self.title or self.flow)} — {e(self.registry)}</h1>",
            f"<p>Status: <b class='{e(self.status)}'>{e(self.status)}</b> · started "
            f"{self.started:%Y-%m-%d %H:%M:%S} UTC"
            + (f" · finished {self.finished:%H:%M:%S} UTC" if self.finished else "")
            + "</p>",
        ]
        if self.summary:
            parts.append("<table>")
            for k, v in self.summary.items():
                parts.append(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(k, v))}</td></tr>")
            parts.append("</table>")
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul>")
        if self.extra_html:
            parts.append(self.extra_html)
        for t in self.tables:
            cols = t.cols()
            parts.append(
                f"<h2>{e(t.name)} ({len(t.rows)})</h2><table><tr>"
                + "".join(f"<th>{e(c)}</th>" for c in cols)
                + "</tr>"
            )
            for r in t.rows:
                parts.append("<tr>" + "".join(f"<td>{e(_fmt(c, r.get(c)))}</td>" for c in cols) + "</tr>")
            parts.append("</table>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def csv_text(self, table: Table | None = None) -> str:
        t = table or (self.tables[0] if self.tables else Table("summary", [self.summary]))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=t.cols(), extrasaction="ignore")
        w.writeheader()
        for r in t.rows:
            w.writerow({k: _csv(v) for k, v in r.items()})
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {
            "flow": self.flow,
            "registry": self.registry,
            "status": self.status,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "summary": {k: _jsonable(v) for k, v in self.summary.items()},
            "notes": self.notes,
            "tables": {t.name: len(t.rows) for t in self.tables},
            "files": {k: str(v) for k, v in self.paths.items()},
        }

    def write(self, reports_dir: str | os.PathLike) -> dict:
        """Write CSV + HTML + JSON under ``reports_dir/<flow>/`` and refresh the index."""
        root = Path(reports_dir)
        d = root / self.flow
        d.mkdir(parents=True, exist_ok=True)
        stem = f"{self.started:%Y%m%dT%H%M%SZ}-{self.slug}"
        if self.key and self.key != f"{self.flow}-{self.registry}":
            stem += "-" + re.sub(r"[^a-z0-9-]+", "-", self.key.lower()).strip("-")
        n = 1
        while (d / f"{stem}.json").exists() and not self.paths:  # two runs in one second
            n += 1
            stem = f"{self.started:%Y%m%dT%H%M%SZ}-{self.slug}-{n}"
        paths = {"csv": d / f"{stem}.csv", "html": d / f"{stem}.html", "json": d / f"{stem}.json"}
        # extra tables get their own CSVs
        for t in self.tables[1:]:
            tslug = re.sub(r"[^a-z0-9]+", "-", t.name.lower()).strip("-")
            paths[f"csv:{t.name}"] = d / f"{stem}-{tslug}.csv"
        self.paths = {k: str(v) for k, v in paths.items()}
        atomic_write(paths["csv"], self.csv_text())
        for t in self.tables[1:]:
            atomic_write(Path(self.paths[f"csv:{t.name}"]), self.csv_text(t))
        atomic_write(paths["html"], self.html())
        atomic_write(paths["json"], json.dumps(self.to_dict(), indent=1))
        write_index(root)
        return self.paths


def write_index(root: str | os.PathLike) -> Path:
    """``reports/index.html``: the latest run of each flow and registry."""
    root = Path(root)
    latest: dict[tuple[str, str], dict] = {}
    for j in sorted(root.glob("*/*.json")):
        try:
            data = json.loads(j.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "flow" not in data:
            continue
        key = (data["flow"], data.get("registry", ""))
        if key not in latest or data.get("started", "") >= latest[key].get("started", ""):
            data["_html"] = os.path.relpath(j.with_suffix(".html"), root)
            latest[key] = data
    e = html.escape
    rows = []
    for (flow, reg), d in sorted(latest.items()):
        summ = ", ".join(f"{k}: {_fmt(k, v)}" for k, v in list(d.get("summary", {}).items())[:4])
        rows.append(
            f"<tr><td>{e(flow)}</td><td>{e(reg)}</td><td class='{e(d.get('status', ''))}'>"
            f"{e(d.get('status', ''))}</td><td>{e(d.get('started', ''))}</td>"
            f"<td><a href='{e(d['_html'])}'>report</a></td><td>{e(summ)}</td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>regkeeper reports</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}.failed,.refused{color:#b00020}"
        ".ok{color:#187a2f}</style></head><body><h1>regkeeper: latest runs</h1><table>"
        "<tr><th>flow</th><th>registry</th><th>status</th><th>started</th><th></th><th>summary</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    out = root / "index.html"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page)
    return out


def _fmt(key, v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, int) and isinstance(key, str) and "bytes" in key.lower():
        return f"{v} ({human_bytes(v)})"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


def _csv(v):
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v


def _jsonable(v):
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")
