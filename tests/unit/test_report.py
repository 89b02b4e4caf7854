"""What a reader sees first: the report writer's headline, short digests, column order and the
table artifact; the gc / expire, backup and capacity headlines built on it."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from regkeeper import capacity as cap
from regkeeper.capacity.report import FIRST_RUN, history_rows, usage_chart_html, usage_report
from regkeeper.policy.decisions import ManifestDecision, Plan, TagDecision
from regkeeper.prune import build_report
from regkeeper.prune.delete import DeleteResult
from regkeeper.report import Link, Report, short_digests

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")


def plan(kube: bool = True) -> Plan:
    p = Plan("reg", T0, kube_protection=kube, untagged_known=True, bytes_freed=3 * 1024 * 1024)
    p.policies = {"team/app": "gc", "base/os": "gc"}
    p.tags = [
        TagDecision("team/app", "1.0", D1, "keep", "among newest 2", "gc", 3.0, "push:filesystem"),
        TagDecision(
            "team/app", "0.9", D2, "delete", "older than 30 days", "gc", 40.25, "push:filesystem", 1000
        ),
        TagDecision(
            "team/app", "0.8", D3, "keep", "in use", "gc", 50.0, "push:filesystem", 0, ("prod/Pod/x",), "old"
        ),
        TagDecision("base/os", "sha256-" + "d" * 64 + ".sig", D1, "delete", "signature", "gc", 9.0, None),
    ]
    p.manifests = [ManifestDecision("team/app", D2, "delete", "no tag left", ("0.9",), "image", 1000)]
    return p


def test_gc_dry_run_headline_columns_and_deletes_first():
    rep = build_report("gc", "reg", plan(), dry_run=True)
    assert rep.status == "dry-run"
    assert rep.headline[0] == "Would delete 2 tags (1 manifest) in 2 repositories, freeing 3.0 MiB (exact)."
    assert "Kept because a workload uses them: 1 tag (1 expired but in use)." in rep.headline
    t = rep.tables[0]
    assert t.name == "decisions" and t.cols()[:4] == ["action", "repository", "tag", "reason"]
    assert t.cols()[4:7] == ["age_days", "bytes_freed", "digest"]  # the digest after what it frees
    assert [r["action"] for r in t.rows] == ["delete", "delete", "keep", "keep"]  # deletes first
    md = rep.markdown()
    # the status, then the headline, then the figures: what a user must know comes first
    assert (
        md.index("**Status: DRY RUN — nothing was changed**")
        < md.index("Would delete")
        < md.index("## Figures")
    )
    assert "| figure | value |" in md  # no empty header row
    assert "_More columns (age_days, bytes_freed, digest, " in md  # the markdown stays narrow
    assert "sha256-dddddddddddd….sig" in md and "sha256-" + "d" * 64 not in md  # a signature tag, short
    # the CSV keeps exact values, in the same column order
    rows = list(csv.DictReader(io.StringIO(rep.csv_text())))
    assert list(rows[0])[:3] == ["action", "repository", "tag"] and rows[0]["digest"] in (D1, D2)
    # the HTML shows the short digest with the full one as a tooltip
    assert f"title='{D2}'" in rep.html() and "class='headline dry-run'" in rep.html()


def test_gc_headlines_for_no_protection_refusal_failure_and_nothing_to_do():
    rep = build_report("gc", "reg", plan(kube=False), refused="cap tripped: team/app 50% > 40%")
    assert rep.status == "refused"
    assert rep.headline[0] == "Refused, nothing was deleted: cap tripped: team/app 50% > 40%"
    assert any(h.startswith("The plan (not carried out) deletes 2 tags") for h in rep.headline)
    assert "No Kubernetes in-use protection: images that workloads use are NOT protected." in rep.headline

    res = DeleteResult(deleted=[("team/app", D2)], failed=[("base/os", D1, "HTTP 500")])
    rep = build_report("gc", "reg", plan(), deleted=res)
    assert rep.status == "failed"
    assert rep.headline[0] == "Deleted 1 of 1 planned manifests (2 tags (1 manifest) in 2 repositories)."
    assert f"1 delete FAILED: base/os@{D1}: HTTP 500" in rep.headline
    assert "sha256:aaaaaaaaaaaa…" in rep.markdown()

    empty = Plan("reg", T0, kube_protection=True, tags=plan().tags[:1], policies={"team/app": "gc"})
    assert build_report("gc", "reg", empty).headline[0] == "Nothing to delete: all 1 tag kept."


def test_artifact_table_readable_cells_and_an_empty_table():
    rep = build_report("expire", "reg", plan(), dry_run=True)
    rows, desc = rep.artifact_table()
    assert desc == "decisions: 4 rows" and list(rows[0])[0] == "action"
    deleted = rows[0]
    assert deleted["digest"].endswith("…") and len(deleted["digest"]) == 20
    assert deleted["bytes_freed"] in ("1000 B", "0 B") and deleted["age_days"] in ("40.2", "9.0")
    rows, desc = rep.artifact_table(max_rows=1)
    assert len(rows) == 1 and desc == "decisions: first 1 of 4 rows; all in the CSV report"

    r = Report("backup", "reg")
    r.add_table("repositories", [], ["repository", "tags"])
    assert r.artifact_table() == ([{"repository": "(none)", "tags": ""}], "repositories: 0 rows")
    early = Report("gc", "reg", summary={"tags scanned": 0, "scan seconds": None})  # failed before a plan
    assert early.artifact_table() == (
        [{"figure": "tags scanned", "value": "0"}],
        "figures (no table: the run ended early): 1 row",
    )
    assert Report("x", "y").artifact_table()[0] == [{"result": "(none)"}]


def test_links_render_as_links_where_a_reader_can_follow_them():
    r = Report("nightly", "all")
    url = "http://127.0.0.1:4200/runs/flow-run/0b8c"
    r.add_table(
        "jobs",
        [
            {"job": "gc", "flow run": Link("0b8c…", url, "0b8c-full-id")},
            {"job": "expire", "flow run": Link("1234")},
        ],
    )
    assert f"[0b8c…]({url})" in r.markdown() and "| expire | 1234 |" in r.markdown()
    assert f"<a href='{url}'>0b8c…</a>" in r.html()
    assert r.artifact_table()[0][0]["flow run"] == url  # plain text there: the URL to copy
    assert r.csv_text().splitlines()[1:] == ["gc,0b8c-full-id", "expire,1234"]  # exact values for tooling
    assert short_digests(f"x {D1} y") == "x sha256:aaaaaaaaaaaa… y"


def _usage(used: int, allocated: int, size: int = 100_000) -> cap.StorageUsage:
    return cap.StorageUsage(used, 10, size, size - allocated, "filesystem", "/r", allocated_bytes=allocated)


def test_capacity_compares_like_with_like(tmp_path):
    store = cap.StateStore(tmp_path)
    # no capacityBytes: allocated bytes against the filesystem size (df's basis)
    chk = cap.check_capacity("reg", _usage(60_000, 84_000), store=store, now=T0)
    assert (chk.used_bytes, chk.basis, chk.capacity_source) == (84_000, "allocated bytes", "filesystem")
    assert chk.ratio == 0.84 and chk.level == "warn"
    # capacityBytes: file bytes (what the registry stores) against the configured capacity
    chk = cap.check_capacity("reg2", _usage(60_000, 84_000), capacity_bytes=100_000, store=store, now=T0)
    assert (chk.used_bytes, chk.basis, chk.ratio, chk.level) == (60_000, "file bytes", 0.6, "ok")


def test_capacity_first_run_report_history_table_and_no_empty_chart(tmp_path):
    h = cap.UsageHistory(tmp_path / "history.csv")
    chk = cap.check_capacity("reg", _usage(60_000, 84_000), store=cap.StateStore(tmp_path), history=h, now=T0)
    rep = Report("capacity", "reg")
    usage_report(rep, _usage(60_000, 84_000), chk, [], dry_run=False)
    assert (
        rep.headline[0]
        == "Level WARN: 84.0% used — 82.0 KiB (allocated bytes) of 97.7 KiB (the filesystem's size)."
    )
    assert rep.headline[1] == "Forecast: history starts now; it needs 3 measurements over at least an hour."
    assert rep.headline[2].startswith("Alert WARN (crossing): [WARN] registry reg")
    assert rep.summary["basis"] == "allocated bytes" and rep.summary["file bytes"] == 60_000
    df = h.load("reg")
    html = usage_chart_html(df, chk, 0.8, 0.9, "reg")
    assert FIRST_RUN in html and "<svg" not in html
    for i in range(1, 5):
        cap.check_capacity(
            "reg",
            _usage(60_000, 84_000 + 1000 * i),
            store=cap.StateStore(tmp_path),
            history=h,
            now=T0 + timedelta(minutes=30 * i),
        )
    rows = history_rows(h.load("reg"))
    assert [r["used bytes"] for r in rows] == [88_000, 87_000, 86_000, 85_000, 84_000]  # newest first
    assert rows[0]["usage"] == "88.0%" and rows[0]["basis"] == "allocated bytes"
    assert rows[0]["days to full"] is not None and rows[-1]["days to full"] is None
    assert "<svg" in usage_chart_html(h.load("reg"), chk, 0.8, 0.9, "reg")
    assert isinstance(rows[0]["time (UTC)"], datetime) and pd.Timestamp(rows[0]["time (UTC)"]) > T0


def test_an_empty_table_says_what_it_means():
    r = Report("backtest", "reg")
    r.add_table("regret", [], ["kind", "digest"], empty="No regret: nothing wanted afterwards.")
    r.add_table("other", [], ["a"])
    html = r.html()
    assert "<h2>regret (0)</h2><p class='empty'>No regret: nothing wanted afterwards.</p>" in html
    assert "<h2>other (0)</h2><p class='empty'>No rows.</p>" in html
    assert "<th>kind</th>" not in html  # no header-only table
    md = r.markdown()
    assert "## regret (0 rows)\n\n_No regret: nothing wanted afterwards._" in md
    assert "## other" not in md  # no explanation given: left out of the markdown as before
    assert r.artifact_table()[0] == [{"kind": "No regret: nothing wanted afterwards.", "digest": ""}]
    assert r.csv_text() == "kind,digest\r\n"  # the CSV stays a plain empty table


def test_runs_in_the_same_second_get_names_that_sort_in_run_order(tmp_path):
    """A second (and third) run in the same second: ``<stamp>.02-<slug>``, after ``<stamp>-<slug>``
    by name as by start; an artifact key suffix survives the collision; nothing is overwritten."""
    t = datetime(2026, 12, 2, 14, 59, 25, tzinfo=UTC)
    runs = [Report("gc", "reg", started=t + timedelta(microseconds=i)) for i in range(3)]
    names = [Path(r.write(tmp_path)["json"]).name for r in runs]
    assert names == [
        "20261202T145925Z-reg.json",
        "20261202T145925Z.02-reg.json",
        "20261202T145925Z.03-reg.json",
    ]
    assert sorted(names) == names
    assert [json.loads((tmp_path / "gc" / n).read_text())["started"] for n in names] == [
        r.started.isoformat() for r in runs
    ]
    keyed = [Report("replicate", "a", started=t, key="replication-Replica B") for _ in range(2)]
    assert [Path(r.write(tmp_path)["json"]).name for r in keyed] == [
        "20261202T145925Z-a-replication-replica-b.json",
        "20261202T145925Z.02-a-replication-replica-b.json",
    ]
