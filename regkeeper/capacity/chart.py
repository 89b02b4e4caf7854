"""The usage chart of the HTML report: an inline SVG line chart with warn / critical / capacity
lines, drawn without a plotting library."""

import html

from ..util import human_bytes


def render_usage_svg(
    df,
    capacity_bytes: int | None = None,
    warn: float = 0.8,
    critical: float = 0.9,
    *,
    registry: str | None = None,
    width: int = 640,
    height: int = 200,
    title: str | None = None,
) -> str:
    """A small inline SVG line chart of ``bytes_used`` over time with the warn / critical /
    capacity lines (no plotting library), for the HTML report."""
    import pandas as pd

    d = df
    if registry is not None and "registry" in d.columns:
        d = d[d["registry"] == registry]
    d = d.dropna(subset=["timestamp", "bytes_used"])
    esc = html.escape
    title = title or (f"Storage usage: {registry}" if registry else "Storage usage")
    pad_l, pad_r, pad_t, pad_b = 70, 70, 22, 24
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'font-family="sans-serif" font-size="11">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
        f'<text x="{pad_l}" y="14" font-weight="bold">{esc(title)}</text>',
    ]
    if d.empty:
        parts.append(
            f'<text x="{pad_l + pw / 2:.1f}" y="{pad_t + ph / 2:.1f}" text-anchor="middle" '
            f'fill="#888">no history yet</text></svg>'
        )
        return "".join(parts)
    ts = pd.to_datetime(d["timestamp"], utc=True)
    d = d.assign(timestamp=ts).sort_values("timestamp")
    t0, t1 = d["timestamp"].iloc[0], d["timestamp"].iloc[-1]
    tspan = max((t1 - t0).total_seconds(), 1.0)
    ymax_data = float(d["bytes_used"].max())
    ymax = max(ymax_data, float(capacity_bytes or 0)) * 1.05 or 1.0

    def px(t) -> float:
        return pad_l + (t - t0).total_seconds() / tspan * pw

    def py(v: float) -> float:
        return pad_t + ph - v / ymax * ph

    if capacity_bytes:
        parts += _threshold_lines(capacity_bytes, warn, critical, py, pad_l, pw)
    pts = " ".join(
        f"{px(t):.1f},{py(float(v)):.1f}" for t, v in zip(d["timestamp"], d["bytes_used"], strict=True)
    )
    parts.append(f'<polyline class="usage" fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
    if len(d) == 1:  # a first run: one point, no line yet
        x, y = pts.split(",")
        parts.append(f'<circle class="usage" cx="{x}" cy="{y}" r="3" fill="#1f77b4"/>')
        parts.append(
            f'<text x="{pad_l + pw / 2:.1f}" y="{pad_t + ph / 2:.1f}" text-anchor="middle" fill="#888">'
            "history starts now; the chart appears after the second run</text>"
        )
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{esc(human_bytes(ymax))}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + ph}" text-anchor="end">0</text>')
    fmt = "%Y-%m-%d %H:%M"
    parts.append(f'<text x="{pad_l}" y="{height - 6}">{esc(t0.strftime(fmt))}</text>')
    parts.append(f'<text x="{pad_l + pw}" y="{height - 6}" text-anchor="end">{esc(t1.strftime(fmt))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _threshold_lines(capacity_bytes: int, warn: float, critical: float, py, pad_l: int, pw: int) -> list[str]:
    """The dashed capacity / critical / warn lines with their labels on the right."""
    out = []
    for cls, ratio, color in (
        ("capacity", 1.0, "#555"),
        ("critical", critical, "#d00000"),
        ("warn", warn, "#e0a800"),
    ):
        y = py(ratio * capacity_bytes)
        out.append(
            f'<line class="threshold {cls}" x1="{pad_l}" x2="{pad_l + pw}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{color}" stroke-dasharray="4 3"/>'
        )
        label = "capacity" if cls == "capacity" else f"{cls} {ratio * 100:.0f}%"
        out.append(f'<text x="{pad_l + pw + 4}" y="{y + 4:.1f}" fill="{color}">{html.escape(label)}</text>')
    return out
