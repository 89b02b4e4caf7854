"""`regkeeper demo` end to end: real registries on loopback, the sample pushed, the nightly flow
run under Prefect, reports written, and their counts matching the sample (app.demo.SAMPLE).
The registry state is checked on disk, independently of the reports."""

import csv
import re
from pathlib import Path

import pytest

from app.demo import EXPECTED, SAMPLE, run_demo
from tests.support.reports import report_docs


def latest(reports: Path, flow: str, registry: str | None = None) -> dict:
    docs = report_docs(reports / flow)  # in the order the runs started
    docs = [d for d in docs if d.get("flow") == flow and (registry is None or d["registry"] == registry)]
    assert docs, f"no {flow} report for {registry}"
    return docs[-1]


def rows(report: dict) -> list[dict]:
    with open(report["_path"].with_suffix(".csv"), newline="") as f:
        return list(csv.DictReader(f))


def tags_on_disk(storage: Path) -> dict[str, set[str]]:
    base = storage / "docker/registry/v2/repositories"
    out = {}
    for tags_dir in base.glob("**/_manifests/tags"):
        repo = str(tags_dir.parent.parent.relative_to(base))
        out[repo] = {p.name for p in tags_dir.iterdir() if (p / "current" / "link").exists()}
    return {r: t for r, t in out.items() if t}


@pytest.fixture(scope="module")
def demo_run(prefect_harness, tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = run_demo(str(work), keep_running=False)
    return rc, work, buf.getvalue()


def test_demo_succeeds_and_says_where_to_look(demo_run):
    rc, work, out = demo_run
    assert rc == 0, out
    assert str(work / "reports" / "index.html") in out
    assert "prefect server start" in out
    # both registries were stopped by PID (their pid files are removed on stop)
    assert not (work / "registry" / "registry.pid").exists()
    assert not (work / "replica" / "registry.pid").exists()


def test_index_links_the_latest_run_of_every_flow(demo_run):
    _, work, _ = demo_run
    reports = work / "reports"
    html = (reports / "index.html").read_text()
    links = re.findall(r"href='([^']+)'", html)
    flows = {Path(link).parts[0] for link in links}
    assert flows == {"backup", "gc", "expire", "replicate", "capacity", "nightly"}
    for link in links:
        assert (reports / link).is_file(), link


def test_nightly_report_has_one_row_per_job_report_and_links_them(demo_run, prefect_harness):
    _, work, _ = demo_run
    nightly = latest(work / "reports", "nightly")
    assert nightly["status"] == "ok"
    assert nightly["summary"] == nightly["summary"] | {
        "jobs run": 5,
        "jobs ok": 5,
        "jobs failed": 0,
        "jobs refused": 0,
        "jobs skipped": 0,
    }
    table = rows(nightly)
    assert [r["job"] for r in table] == ["backup", "gc", "expire", "replicate", "capacity", "capacity"]
    assert {r["status"] for r in table} == {"ok"}
    for r in table:
        assert Path(r["report"]).is_file()
    html = nightly["_path"].with_suffix(".html").read_text()
    for r in table:
        rel = Path(r["report"]).relative_to(work / "reports")
        assert f"href='../{rel}'" in html
    # the subflow runs are in Prefect, completed
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        for r in table:
            run = c.read_flow_run(r["flow run"])
            assert run.state.is_completed(), (r["job"], run.state)
            assert run.parent_task_run_id is not None  # a subflow of the nightly run


def test_backup_saw_the_whole_sample_before_gc(demo_run):
    _, work, _ = demo_run
    b = latest(work / "reports", "backup")
    assert b["status"] == "ok"
    assert b["summary"]["tags"] == EXPECTED["tags pushed"] == len(SAMPLE)
    assert b["summary"]["repositories"] == EXPECTED["repositories"] == len({i.repo for i in SAMPLE})
    assert list((work / "backups").glob("snapshots/demo-registry/*.json"))


def test_gc_counts_match_the_sample(demo_run):
    _, work, _ = demo_run
    gc = latest(work / "reports", "gc")
    s = gc["summary"]
    assert gc["status"] == "ok"
    assert s["tags scanned"] == 24
    assert s["tags deleted"] == 4 == EXPECTED["gc"]["tags deleted"]
    assert s["in use (kept)"] == 2 == EXPECTED["gc"]["in use (kept)"]
    assert s["manifests deleted"] == 6  # 3 images + the stale index and its 2 children
    assert s["deletes failed"] == 0 and s["verify problems"] == 0
    assert s["kubernetes protection"] is True
    decisions = rows(gc)
    digest = {(r["repository"], r["tag"]): r["digest"] for r in decisions}
    sig_100 = "sha256-" + digest[("team-a/app-service", "1.0.0")].split(":")[1] + ".sig"
    deleted = {(r["repository"], r["tag"]) for r in decisions if r["action"] == "delete"}
    assert deleted == {
        ("team-a/app-service", "1.0.0"),
        ("team-a/app-service", "1.1.0"),
        ("team-a/app-service", sig_100),
        ("team-b/web", "v1"),
    }
    in_use = {(r["repository"], r["tag"]) for r in decisions if r["action"] == "keep" and r["in_use"]}
    assert in_use == {("team-a/app-service", "1.2.0"), ("team-a/app-service", "1.3.0")}
    by_tag = {(r["repository"], r["tag"]): r for r in decisions}
    assert by_tag[("team-b/web", "v2")]["action"] == "keep"  # shares its digest with "stable"
    assert by_tag[("base/alpine", "3.18")]["action"] == "keep"  # gc excludes base/**


def test_expire_counts_match_the_sample(demo_run):
    _, work, _ = demo_run
    ex = latest(work / "reports", "expire")
    s = ex["summary"]
    assert ex["status"] == "ok"
    assert s["tags scanned"] == 20  # what gc left
    assert s["tags deleted"] == 4 == EXPECTED["expire"]["tags deleted"]
    assert s["expired but in use"] == 2 == EXPECTED["expire"]["expired but in use"]
    assert sorted(s["repositories removed"]) == ["ci/build-123", "ci/build-124", "tmp/scratch"]
    decisions = rows(ex)
    deleted = {f"{r['repository']}:{r['tag']}" for r in decisions if r["action"] == "delete"}
    assert deleted == set(EXPECTED["expire"]["deleted"])
    kept_in_use = {
        f"{r['repository']}:{r['tag']}" for r in decisions if r["action"] == "keep" and r["in_use"]
    }
    assert kept_in_use == {"ci/build-126:pr-7", "team-a/app-service:1.2.0"}


def test_registry_and_replica_hold_exactly_what_should_remain(demo_run):
    _, work, _ = demo_run
    primary = tags_on_disk(work / "registry" / "storage")
    gc = rows(latest(work / "reports", "gc"))
    d100 = next(r["digest"] for r in gc if r["tag"] == "1.5.0" and r["repository"] == "team-a/app-service")
    sig_150 = "sha256-" + d100.split(":")[1] + ".sig"
    assert primary == {
        "team-a/app-service": {"1.2.0", "1.3.0", "1.4.0", "1.5.0", "latest", sig_150},
        "team-b/web": {"v2", "stable", "v3", "v4"},
        "base/alpine": {"3.18", "3.19", "3.20", "latest"},
        "ci/build-125": {"0a1b2c3"},
        "ci/build-126": {"pr-7"},
    }
    # emptied temp repositories are gone from storage (so from the catalog)
    repos = work / "registry/storage/docker/registry/v2/repositories"
    for gone in ("ci/build-123", "ci/build-124", "tmp/scratch"):
        assert not (repos / gone).exists()
    replica = tags_on_disk(work / "replica" / "storage")
    assert sorted(replica) == EXPECTED["replicated repositories"]
    for repo, tags in replica.items():
        assert tags == primary[repo], repo
    rep = latest(work / "reports", "replicate")
    assert rep["status"] == "ok"
    assert rep["summary"]["copied"] == sum(len(primary[r]) for r in replica) == 14
    assert rep["summary"]["failed"] == 0


def test_capacity_measured_both_registries(demo_run):
    _, work, _ = demo_run
    for name, images, repos in (("demo-registry", 16, 5), ("demo-replica", 14, 3)):
        c = latest(work / "reports", "capacity", name)
        assert c["status"] == "ok"
        assert c["summary"]["level"] == "ok"
        assert c["summary"]["images (tags)"] == images
        assert c["summary"]["repositories"] == repos
        assert 0 < c["summary"]["storage bytes"] < c["summary"]["capacity bytes"]


# --------------------------------------------------------------------------- nightly isolation


@pytest.fixture
def sample_registry(tmp_path):
    """The demo's registry with the demo sample, and a config for it (no replica)."""
    import yaml

    from app.demo import SNAPSHOT_TEMPLATE, DemoRegistry, push_sample, write_config, write_snapshot

    reg = DemoRegistry(tmp_path / "registry", "demo-registry").start()
    try:
        pushed = push_sample(reg)
        snap = write_snapshot(SNAPSHOT_TEMPLATE, tmp_path / "kube-snapshot.json", reg.host, pushed)
        cfg_path = write_config(tmp_path, reg, reg, snap)
        doc = yaml.safe_load(cfg_path.read_text())
        doc["mirrorRepositories"] = doc["mirrorRepositories"][:1]
        doc.pop("replication")
        yield reg, tmp_path, doc
    finally:
        reg.stop()


def write(tmp_path: Path, doc: dict) -> str:
    import yaml

    p = tmp_path / "nightly.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(p)


def test_nightly_runs_every_job_when_one_fails_and_ends_failed(prefect_harness, sample_registry):
    from flows.nightly import nightly

    reg, tmp, doc = sample_registry
    (tmp / "not-a-dir").write_text("a file where the backup directory should be\n")
    doc["backup"]["target"] = f"file://{tmp / 'not-a-dir' / 'backups'}"  # backup fails
    doc["gc"]["maxDeleteFraction"] = 0.05  # gc refuses (blast-radius cap)
    doc.pop("replication", None)  # replicate is skipped

    state = nightly(config_path=write(tmp, doc), return_state=True)

    assert state.is_failed()
    assert "backup (failed)" in state.message and "gc (refused)" in state.message
    report = latest(tmp / "reports", "nightly")
    assert report["status"] == "failed"
    assert report["summary"] | {"seconds": 0} == {
        "jobs run": 4,
        "jobs ok": 2,
        "jobs failed": 1,
        "jobs refused": 1,
        "jobs skipped": 1,
        "seconds": 0,
    }
    table = {r["job"]: r for r in rows(report)}
    assert list(table) == ["backup", "gc", "expire", "replicate", "capacity"]
    assert table["backup"]["status"] == "failed" and table["backup"]["error"]
    assert table["gc"]["status"] == "refused" and "cap" in table["gc"]["error"]
    assert Path(table["gc"]["report"]).is_file()  # the refusal has its own report
    assert table["replicate"]["status"] == "skipped" and "no replication" in table["replicate"]["error"]
    # the jobs after the failures ran
    assert table["expire"]["status"] == "ok"
    assert table["capacity"]["status"] == "ok" and Path(table["capacity"]["report"]).is_file()
    assert any("replicate: skipped" in n for n in report["notes"])
    assert any(n.startswith("backup failed:") for n in report["notes"])
    # gc deleted nothing; expire applied the tiers to the whole sample
    assert latest(tmp / "reports", "gc")["summary"]["tags to delete"] == 4
    assert latest(tmp / "reports", "expire")["summary"]["tags deleted"] == 8
    left = tags_on_disk(reg.storage)
    assert left["team-b/web"] == {"v2", "stable", "v3", "v4"}
    assert "ci/build-123" not in left and left["ci/build-126"] == {"pr-7"}


def test_nightly_dry_run_selected_jobs_change_nothing(prefect_harness, sample_registry):
    from flows.nightly import nightly

    reg, tmp, doc = sample_registry
    before = tags_on_disk(reg.storage)
    result = nightly(config_path=write(tmp, doc), dry_run=True, jobs=["gc", "expire"])
    assert result["status"] == "dry-run"
    assert [(j["job"], j["status"]) for j in result["jobs"]] == [("gc", "dry-run"), ("expire", "dry-run")]
    assert latest(tmp / "reports", "gc")["summary"]["tags to delete"] == 4
    assert latest(tmp / "reports", "expire")["summary"]["tags to delete"] == 8  # gc deleted nothing first
    assert tags_on_disk(reg.storage) == before
    assert not (tmp / "reports" / "backup").exists()
