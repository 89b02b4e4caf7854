"""What a user reads in the Prefect UI, against the harness's real server: the gc preview
deployment's flow deletes nothing and its artifacts lead with the status and what it would
delete (table: action first, deletes first, short digests); a first capacity run has a table
artifact and says when the chart appears; the nightly report links each job's flow run."""

import datetime as dt
import os
from pathlib import Path

import pytest

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)


def artifacts_of(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts}


@pytest.fixture
def small_registry(registry_factory, tmp_path):
    reg = registry_factory()
    pushed = images.push_many(reg.url, repos=["team/app", "team/web"], tags_per_repo=3, seed=5, verify=False)
    for img in pushed:  # every tag about 90 days old, build-0002 the newest: keepLast 1 keeps it
        link = Path(reg.root) / "docker/registry/v2/repositories" / img.repo / "_manifests/tags" / img.tag
        t = OLD.timestamp() + 60 * int(img.tag[-4:])
        os.utime(link / "current" / "link", (t, t))
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg)],
        gc={"registry": "local-registry", "days": 30, "keepLast": 1, "maxDeleteFraction": 0.9},
        capacity={"warn": 0.8, "critical": 0.9, "writeCheck": False},
    )
    return reg, pushed, cfg


def test_gc_preview_deletes_nothing_and_its_artifacts_lead_with_what_it_would_delete(small_registry):
    from deployments.preview import gc_preview

    reg, pushed, cfg = small_registry
    state = gc_preview(config_path=str(cfg), return_state=True)
    out = state.result()
    assert out["status"] == "dry-run" and out["summary"]["tags to delete"] == 4
    for img in pushed:  # nothing deleted
        assert images.head_manifest(reg.url, img.repo, img.tag, verify=False) == img.digest
    arts = artifacts_of(state.state_details.flow_run_id)
    md = arts["gc-local-registry"].data
    status = md.index("**Status: DRY RUN — nothing was changed**")
    would = md.index("Would delete 4 tags (4 manifests) in 2 repositories, freeing ")
    assert status < would < md.index("## Figures") < md.index("## decisions")
    assert "No Kubernetes in-use protection" in md
    table = arts["gc-local-registry-table"].data
    rows = table if isinstance(table, list) else __import__("json").loads(table)
    assert list(rows[0])[:7] == ["action", "repository", "tag", "reason", "age_days", "bytes_freed", "digest"]
    assert [r["action"] for r in rows] == ["delete"] * 4 + ["keep"] * 2  # deletes first
    deleted = {(r["repository"], r["tag"]) for r in rows if r["action"] == "delete"}
    assert deleted == {(i.repo, i.tag) for i in pushed if i.tag != "build-0002"}
    by_tag = {(i.repo, i.tag): i.digest for i in pushed}
    for r in rows:
        full = by_tag[(r["repository"], r["tag"])]
        assert r["digest"] == full[:19] + "…"  # short: nothing important is pushed off to the right


def test_first_capacity_run_has_a_table_artifact_and_no_empty_chart(small_registry):
    from flows.capacity import capacity

    reg, _, cfg = small_registry
    state = capacity(config_path=str(cfg), logical_usage=False, return_state=True)
    out = state.result()
    arts = artifacts_of(state.state_details.flow_run_id)
    md = arts["capacity-local-registry"].data
    assert md.index("**Status: OK**") < md.index("Level OK: ") < md.index("## Figures")
    assert "(allocated bytes) of " in md and "(the filesystem's size)" in md
    assert "Forecast: history starts now" in md
    rows = arts["capacity-local-registry-table"].data
    rows = rows if isinstance(rows, list) else __import__("json").loads(rows)
    assert len(rows) == 1 and list(rows[0]) == [
        "time (UTC)",
        "usage",
        "used bytes",
        "capacity bytes",
        "basis",
        "days to full",
    ]
    assert rows[0]["basis"] == "allocated bytes" and rows[0]["usage"].endswith("%")
    html = Path(out["files"]["html"]).read_text()
    assert "history starts now; the chart appears after the second run" in html and "<svg" not in html
    again = capacity(config_path=str(cfg), logical_usage=False)
    assert "<svg" in Path(again["files"]["html"]).read_text()


def test_nightly_links_each_job_flow_run_in_the_ui(small_registry):
    from prefect.settings import PREFECT_UI_URL

    from flows.nightly import nightly

    _, _, cfg = small_registry
    state = nightly(config_path=str(cfg), jobs=["gc", "capacity"], dry_run=True, return_state=True)
    out = state.result()
    ui = PREFECT_UI_URL.value()
    assert ui and ui.startswith("http://127.0.0.1:")
    ids = [r["flow run"] for r in out["jobs"]]
    assert len(ids) == 2 and all(ids)
    md = artifacts_of(state.state_details.flow_run_id)["nightly-all"].data
    html = Path(out["files"]["html"]).read_text()
    from prefect.client.orchestration import get_client

    for run_id in ids:
        url = f"{ui}/runs/flow-run/{run_id}"
        with get_client(sync_client=True) as client:
            name = client.read_flow_run(run_id).name
        assert f"[{name}]({url})" in md  # a link named as the UI names the run, not a raw UUID
        assert f"<a href='{url}'>" in html
        assert f"| {run_id} |" not in md
    assert out["headline"][0] == "2 of 2 job(s) ok (dry run)."


def test_flow_run_url_falls_back_without_a_server():
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    from tasks.common import flow_run_url

    with temporary_settings(updates={PREFECT_API_URL: "http://prefect.example:4200/api"}):
        assert flow_run_url("abc") == "http://prefect.example:4200/runs/flow-run/abc"
    with temporary_settings(updates={PREFECT_UI_URL: "https://ui.example/"}):
        assert flow_run_url("abc") == "https://ui.example/runs/flow-run/abc"
    with temporary_settings(restore_defaults={PREFECT_API_URL, PREFECT_UI_URL}):
        assert flow_run_url("abc") is None  # local mode: the id, no link to a server that is gone
    assert flow_run_url("") is None
