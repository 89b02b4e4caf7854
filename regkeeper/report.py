"""One report writer for every flow.

A run's Report holds a status, a headline (what a reader must know first: what was deleted or
would be, refusals and why, failures), key figures, notes, and named tables. It renders to
``reports/<flow>/<timestamp>-<registry>.csv`` (the main table), ``.html`` (everything) and
``.json`` (for tooling), ``reports/index.html`` (the latest run of each flow), and the Prefect
artifacts: markdown (headline first, then figures, notes, first rows) and the main table
(:meth:`Report.artifact_table`). CSV and JSON carry exact values (full digests); what people
read shows short digests (``sha256:0123456789ab…``; the HTML has the full one as a tooltip),
readable bytes and :class:`Link` cells as links. Reports never contain secrets: they are built
from inventory data, and free text goes through ``util.scrub``.
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

STATUS_TEXT = {
    "ok": "OK",
    "dry-run": "DRY RUN — nothing was changed",
    "failed": "FAILED",
    "refused": "REFUSED",
}
CELL_LIMIT = 100  # characters per cell in markdown and the table artifact (the CSV has it all)


@dataclass(frozen=True)
class Link:
    """A table cell that is a link where the reader can follow one (HTML, markdown; the table
    artifact shows the URL); ``url`` None renders the text alone. CSV and JSON carry ``value``
    (e.g. the full id), else the text."""

    text: str
    url: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    name: str
    rows: list[dict]
    columns: list[str] | None = None
    brief: list[str] | None = None  # the columns the markdown shows (the rest: artifact, CSV)
    empty: str | None = None  # what an empty table means (HTML, markdown, table artifact)

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
    headline: list[str] = field(default_factory=list)  # what a reader must know first
    summary: dict = field(default_factory=dict)  # key figures, in display order
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    extra_html: str = ""  # e.g. an inline SVG chart
    paths: dict = field(default_factory=dict)
    key: str | None = None  # artifact key override (e.g. replication-<target>)

    # ------------------------------------------------------------------ building

    def note(self, text: str) -> None:
        self.notes.append(scrub(str(text)))

    def lead(self, text: str) -> None:
        """A headline line: shown first, before the figures (markdown, HTML, JSON)."""
        self.headline.append(scrub(str(text)))

    def add_table(self, name: str, rows: list[dict], columns=None, brief=None, empty=None) -> Table:
        t = Table(name, rows, columns, brief, empty)
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

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status.upper())

    def finish(self, status: str | None = None) -> "Report":
        if status:
            self.status = status
        self.finished = utcnow()
        return self

    def _when(self) -> str:
        took = f" · took {(self.finished - self.started).total_seconds():.1f} s" if self.finished else ""
        return f"started {self.started:%Y-%m-%d %H:%M:%S} UTC{took}"

    # ------------------------------------------------------------------ rendering

    def markdown(self, max_rows: int = 50) -> str:
        lines = [f"# {_md(self.title or self.flow)} — {_md(self.registry)}", ""]
        lines += [f"**Status: {self.status_text}**", ""]
        lines += [f"- {_md(short_digests(h))}" for h in self.headline]
        lines += ["", f"_{self._when()}_", ""]
        if self.summary:
            lines += ["## Figures", "", "| figure | value |", "|---|---|"]
            lines += [f"| {_md(k)} | {_md(_fmt(k, v))} |" for k, v in self.summary.items() if v is not None]
            lines.append("")
        if self.notes:
            lines += ["## Notes", ""] + [f"- {_md(short_digests(n))}" for n in self.notes] + [""]
        for t in self.tables[:2]:
            if not t.rows:
                if t.empty:
                    lines += [f"## {_md(t.name)} (0 rows)", "", f"_{_md(t.empty)}_", ""]
                continue
            cols = t.brief or t.cols()
            lines += [f"## {_md(t.name)} ({len(t.rows)} row{'s' if len(t.rows) != 1 else ''})", ""]
            if t.brief:
                more = ", ".join(c for c in t.cols() if c not in t.brief)
                lines += [f"_More columns ({_md(more)}): the table artifact and the CSV report._", ""]
            lines += ["| " + " | ".join(_md(c) for c in cols) + " |", "|" + "---|" * len(cols)]
            for r in t.rows[:max_rows]:
                lines.append("| " + " | ".join(_md_cell(c, r.get(c)) for c in cols) + " |")
            if len(t.rows) > max_rows:
                lines.append(f"\n… {len(t.rows) - max_rows} more rows in the CSV report")
            lines.append("")
        if self.paths:
            lines.append("Report files: " + ", ".join(f"`{p}`" for p in self.paths.values()))
        return "\n".join(lines)

    def artifact_table(self, max_rows: int = 200) -> tuple[list[dict], str]:
        """The main table as the rows of a Prefect table artifact (readable cells, columns in the
        table's order) and its description; one "(none)" row when the table is empty; the
        figures when the run ended before it had a table (so every run has one)."""
        figures = [{"figure": k, "value": _fmt(k, v)} for k, v in self.summary.items() if v is not None]
        t = self.tables[0] if self.tables else Table("figures (no table: the run ended early)", figures)
        cols = t.cols() or ["result"]
        rows = [{c: _artifact_cell(c, r.get(c)) for c in cols} for r in t.rows[:max_rows]]
        if not rows:
            rows = [{c: ((t.empty or "(none)") if i == 0 else "") for i, c in enumerate(cols)}]
        shown = f"first {max_rows} of {len(t.rows)} rows; all in the CSV report"
        return rows, f"{t.name}: " + (
            shown if len(t.rows) > max_rows else f"{len(t.rows)} row" + "s" * (len(t.rows) != 1)
        )

    def html(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.flow)} {e(self.registry)} {self.started:%Y-%m-%d %H:%M}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title or self.flow)} — {e(self.registry)}</h1>",
            f"<div class='headline {e(self.status)}'><p class='status'>{e(self.status_text)}</p>",
        ]
        if self.headline:
            parts.append("<ul>" + "".join(f"<li>{e(short_digests(h))}</li>" for h in self.headline) + "</ul>")
        parts.append(f"</div><p class='when'>{e(self._when())}</p>")
        if self.summary:
            parts.append("<h2>Figures</h2><table class='figures'>")
            for k, v in self.summary.items():
                if v is not None:
                    parts.append(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(k, v))}</td></tr>")
            parts.append("</table>")
        if self.notes:
            parts.append(
                "<h2>Notes</h2><ul>"
                + "".join(f"<li>{e(short_digests(n))}</li>" for n in self.notes)
                + "</ul>"
            )
        if self.extra_html:
            parts.append(self.extra_html)
        for t in self.tables:
            cols = t.cols()
            if not t.rows:  # no header-only table: say what empty means
                parts.append(f"<h2>{e(t.name)} (0)</h2><p class='empty'>{e(t.empty or 'No rows.')}</p>")
                continue
            parts.append(
                f"<h2>{e(t.name)} ({len(t.rows)})</h2><table><tr>"
                + "".join(f"<th>{e(c)}</th>" for c in cols)
                + "</tr>"
            )
            for r in t.rows:
                parts.append("<tr>" + "".join(_html_cell(c, r.get(c)) for c in cols) + "</tr>")
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
            "headline": list(self.headline),
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
        stamp, tail = f"{self.started:%Y%m%dT%H%M%SZ}", f"-{self.slug}"
        if self.key and self.key != f"{self.flow}-{self.registry}":
            tail += "-" + re.sub(r"[^a-z0-9-]+", "-", self.key.lower()).strip("-")
        stem, n = stamp + tail, 1
        while (d / f"{stem}.json").exists() and not self.paths:
            # another run in the same second: <stamp>.02-<slug> sorts after <stamp>-<slug>
            n += 1
            stem = f"{stamp}.{n:02d}{tail}"
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


_CSS = (  # table rows stay one line: a long cell ends in … and shows all of it on hover
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
    "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;"
    "vertical-align:top;white-space:nowrap}td{max-width:36em;overflow:hidden;text-overflow:ellipsis}"
    ".figures td,td.what{white-space:normal}th{background:#f3f3f3}.ok{color:#187a2f}.failed,.refused{color:"
    "#b00020}.dry-run{color:#8a6d00}.headline{border-left:6px solid #187a2f;background:#f4faf5;"
    "padding:.4em 1em;margin:1em 0}.headline.failed,.headline.refused{border-color:#b00020;background:"
    "#fdf3f4}.headline.dry-run{border-color:#c79a00;background:#fffbea}.headline .status{font-weight:"
    "bold;font-size:1.15em;margin:.3em 0}.headline ul{margin:.3em 0}.when{color:#666;font-size:13px}"
)


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
        figures = ", ".join(f"{k}: {_fmt(k, v)}" for k, v in list(d.get("summary", {}).items())[:4])
        summ = next(iter(d.get("headline") or []), figures)  # the first headline line, else figures
        rows.append(
            f"<tr><td>{e(flow)}</td><td>{e(reg)}</td><td class='{e(d.get('status', ''))}'>"
            f"{e(d.get('status', ''))}</td><td>{e(d.get('started', '')[:19].replace('T', ' '))}</td>"
            f"<td><a href='{e(d['_html'])}'>report</a></td><td class='what'>{e(short_digests(summ))}</td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>regkeeper reports</title>"
        f"<style>{_CSS}</style></head><body><h1>regkeeper: latest runs</h1><table>"
        "<tr><th>flow</th><th>registry</th><th>status</th><th>started (UTC)</th><th></th>"
        "<th>what happened</th></tr>" + "".join(rows) + "</table></body></html>"
    )
    out = root / "index.html"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page)
    return out


# ---------------------------------------------------------------------- cells

_DIGEST = re.compile(r"\b(sha256)([:-])([0-9a-f]{64})\b")


def short_digests(text: str) -> str:
    """``sha256:<64 hex>`` -> ``sha256:0123456789ab…``, also inside signature tags
    (``sha256-<64 hex>.sig`` -> ``sha256-0123456789ab….sig``)."""
    return _DIGEST.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)[:12]}…", text)


def cell_text(col, v) -> str:
    """A table cell as a reader sees it: short digests, bytes in KiB/MiB, at most CELL_LIMIT
    characters."""
    if isinstance(v, int) and not isinstance(v, bool) and isinstance(col, str) and "bytes" in col.lower():
        s = human_bytes(v)
    elif isinstance(v, float) and isinstance(col, str) and ("days" in col or "age" in col):
        s = f"{v:.1f}"
    else:
        s = short_digests(_fmt(col, v))
    return s if len(s) <= CELL_LIMIT else s[: CELL_LIMIT - 1] + "…"


def _artifact_cell(col, v) -> str:
    """A table-artifact cell: plain text, so a link shows its URL (to copy)."""
    return v.url if isinstance(v, Link) and v.url else cell_text(col, v)


def _md_cell(col, v) -> str:
    text = _md(cell_text(col, v))
    if isinstance(v, Link) and v.url:
        return f"[{text}]({v.url})"
    return text


def _html_cell(col, v) -> str:
    e = html.escape
    full = _fmt(col, v)
    shown = cell_text(col, v) if len(full) <= 400 else full
    if isinstance(v, Link) and v.url:
        return f"<td><a href='{e(v.url)}'>{e(shown)}</a></td>"
    if shown != full:
        return f"<td title='{e(full)}'>{e(shown)}</td>"
    return f"<td>{e(shown)}</td>"


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
    if isinstance(v, Link):
        return v.text if v.value is None else v.value
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
    if isinstance(v, Link):
        return v.text if v.value is None else v.value
    return str(v)


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")
