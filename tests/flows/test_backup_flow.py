"""backup and restore flows end to end (Prefect test harness): real registry, moto S3 target,
reports and artifacts. The logic is tested in tests/integration/test_backup.py; this checks the
composition: batches, index last, prune, reports, artifacts, failure status."""

import json

import pytest
from prefect.client.orchestration import get_client

from flows.backup import backup, restore
from regkeeper import backup as core
from regkeeper.config import BackupConfig
from regkeeper.errors import RegkeeperError
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config

V = {"verify": False}


def truth(reg):
    return {
        (r, t): images.head_manifest(reg.url, r, t, **V)
        for r in images.catalog(reg.url, **V)
        for t in images.list_tags(reg.url, r, **V)
    }


def artifact_keys(flow_run_id) -> set[str]:
    """The keys of the artifacts one flow run published (the session's server holds every
    test's runs: only this run's count)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in arts}


def test_backup_and_restore_flows(registry_factory, moto_server, s3_bucket, tmp_path):
    reg = registry_factory()
    for i in range(3):
        images.push_image(reg.url, f"svc/a{i}", "v1", seed=f"a{i}", **V)
    idx = images.push_index(reg.url, "svc/multi", "latest", seed="m", **V)
    before = truth(reg)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, "main")],
        backup={
            "target": f"s3://{s3_bucket}/meta",
            "keep": 2,
            "endpoint": moto_server.endpoint,
            "accessKey": moto_server.access_key,
            "secretKey": moto_server.secret_key,
        },
    )

    dry = backup(config_path=str(cfg), dry_run=True)
    assert dry["status"] == "dry-run" and dry["summary"]["objects to write"] > 0
    store = core.open_target(
        f"s3://{s3_bucket}/meta",
        BackupConfig.model_validate(
            {
                "target": f"s3://{s3_bucket}/meta",
                "endpoint": moto_server.endpoint,
                "accessKey": moto_server.access_key,
                "secretKey": moto_server.secret_key,
            }
        ),
    )
    assert store.list("") == {}  # the dry run wrote nothing

    ids = []
    for _ in range(3):
        state = backup(config_path=str(cfg), return_state=True)
        res = state.result()
        assert res["status"] == "ok"
        ids.append(res["summary"]["snapshot"])
    assert res["summary"]["tags"] == 4 and res["summary"]["objects written"] == 0
    assert [s.id for s in core.list_snapshots(store, "main")] == ids[1:]  # keep: 2
    csv = (tmp_path / "reports" / "backup").glob("*.csv")
    assert any("svc/multi" in p.read_text() for p in csv)

    for (repo, _tag), d in before.items():
        images.delete_manifest(reg.url, repo, d, **V)
    assert truth(reg) == {}

    plan = restore(registry="main", config_path=str(cfg))  # dry run by default
    assert plan["status"] == "dry-run" and plan["summary"]["would restore"] == 4
    assert truth(reg) == {}
    done_state = restore(
        registry="main", snapshot=ids[1], dry_run=False, config_path=str(cfg), return_state=True
    )
    done = done_state.result()
    assert done["status"] == "ok" and done["summary"]["restored"] == 4
    assert truth(reg) == before
    assert images.head_manifest(reg.url, "svc/multi", "latest", **V) == idx.digest
    assert "backup-main" in artifact_keys(state.state_details.flow_run_id)
    assert {"restore-main", "restore-main-table"} <= artifact_keys(done_state.state_details.flow_run_id)
    assert list((tmp_path / "reports" / "restore").glob("*.html"))


def test_restore_that_cannot_complete_fails_the_run(registry_factory, tmp_path):
    reg = registry_factory()
    img = images.push_image(reg.url, "svc/x", "v1", seed="x", **V)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, "main")],
        backup={"target": f"file://{tmp_path}/bk", "keep": 3},
    )
    backup(config_path=str(cfg))
    images.delete_manifest(reg.url, "svc/x", img.digest, **V)
    assert reg.garbage_collect().returncode == 0  # the layers are gone for good
    with pytest.raises(RegkeeperError, match=r"1 tag\(s\) could not be restored.*svc/x:v1.*layer blob"):
        restore(registry="main", dry_run=False, config_path=str(cfg))
    reports = sorted((tmp_path / "reports" / "restore").glob("*.json"))
    assert json.loads(reports[-1].read_text())["status"] == "failed"


def test_backup_without_backup_section_fails_with_report(registry_factory, tmp_path):
    reg = registry_factory()
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg, "main")])
    with pytest.raises(RegkeeperError, match="no backup section"):
        backup(config_path=str(cfg))
    rep = sorted((tmp_path / "reports" / "backup").glob("*.json"))
    assert json.loads(rep[-1].read_text())["status"] == "failed"
