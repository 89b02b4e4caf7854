"""The replicate flow under Prefect: reports, artifacts, failure and refusal paths, the CLI."""

import json
from pathlib import Path

import pytest

from regkeeper.errors import RefusedError, RegkeeperError
from tests.support import images
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryServer

WRITES = {"PUT", "POST", "PATCH", "DELETE"}


@pytest.fixture
def regs(tmp_path):
    src, dst = RegistryServer(tmp_path / "src"), RegistryServer(tmp_path / "dst")
    try:
        yield src, dst
    finally:
        src.stop()
        dst.stop()


def write_config(tmp_path: Path, src_url: str, dst_url: str, extra: str = "") -> Path:
    cfg = tmp_path / "regkeeper.yaml"
    cfg.write_text(f"""
mirrorRepositories:
- {{name: primary, url: {src_url}, tls: {{verify: false}}, retries: 1}}
- {{name: eu, url: {dst_url}, tls: {{verify: false}}, retries: 1}}
replication:
- {{name: to-eu, from: primary, to: [eu], prefix: eu{extra}}}
reports: {{directory: {tmp_path / 'reports'}}}
cacheDir: {tmp_path / 'cache'}
""")
    return cfg


def report_json(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "reports" / "replicate").glob("*.json"))]


@pytest.fixture(autouse=True)
def keep_harness_server(monkeypatch):
    """The CLI stops Prefect's temporary servers when a run ends; called in-process here, that
    would stop the session's test harness server too."""
    import app.cli
    monkeypatch.setattr(app.cli, "_stop_ephemeral_server", lambda: None, raising=False)


def test_flow_dry_run_then_copy_then_warm(regs, tmp_path, capsys):
    from prefect.client.orchestration import get_client

    from flows.replicate import replicate
    from app.cli import main
    src, dst = regs
    images.push_many(src.url, n_repos=2, tags_per_repo=3, prefix="svc/app", verify=False, seed=1)
    idx = images.push_index(src.url, "svc/multi", "v1", verify=False)
    images.push_signature(src.url, "svc/multi", idx.digest, verify=False)
    cfg = write_config(tmp_path, src.url, dst.url)

    dst.clear_access_log()
    out = replicate(config_path=str(cfg), dry_run=True)
    assert out["status"] == "dry-run" and out["summary"]["lag (tags)"] == 8
    assert [e for e in dst.access_log() if e.method in WRITES] == []

    out = replicate(config_path=str(cfg), rule="to-eu")
    assert out["status"] == "ok" and out["summary"]["copied"] == 8 and out["summary"]["lag (tags)"] == 0
    assert images.head_manifest(dst.url, "eu/svc/multi", "v1", verify=False) == idx.digest
    main_csv = Path(out["files"]["csv"]).read_text().splitlines()
    assert main_csv[0].startswith("repository,target_repository,copied,skipped,failed")
    assert any(line.startswith("svc/app-0000,eu/svc/app-0000,3,0,0") for line in main_csv)
    with get_client(sync_client=True) as client:
        art = client.read_artifacts()
    keys = {a.key for a in art}
    assert {"replication-eu", "replication-eu-table"} <= keys
    table = [a for a in art if a.key == "replication-eu-table"][-1]
    assert "svc/app-0001" in str(table.data) and "lag" in str(table.data)

    # warm, through the CLI: nothing to copy, no writes, exit 0
    dst.clear_access_log()
    capsys.readouterr()
    assert main(["run", "replicate", "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert '"copied": 0' in printed and '"in sync (skipped)": 8' in printed
    assert [e for e in dst.access_log() if e.method in WRITES] == []


def test_flow_failure_publishes_report_then_fails(regs, tmp_path):
    from flows.replicate import replicate
    from app.cli import main
    src, dst = regs
    images.push_many(src.url, n_repos=1, tags_per_repo=3, prefix="f/app", verify=False, seed=2)
    with FaultProxy(dst.url) as proxy:
        proxy.add_fault("status", status=500, method="PUT", path_regex=r"/manifests/build-0001$", times=50)
        cfg = write_config(tmp_path, src.url, proxy.url)
        with pytest.raises(RegkeeperError) as ei:
            replicate(config_path=str(cfg))
        assert "to-eu -> eu" in str(ei.value)
        rep = report_json(tmp_path)[-1]
        assert rep["status"] == "failed" and rep["summary"]["failed"] == 1 and rep["summary"]["copied"] == 2
        failed_csv = Path(rep["files"]["csv:failed items"]).read_text()
        assert "f/app-0000,build-0001," in failed_csv and "HTTP 500" in failed_csv
        assert main(["run", "replicate", "--config", str(cfg)]) == 1      # still failing: exit 1
        proxy.clear_faults()
        assert main(["run", "replicate", "--config", str(cfg)]) == 0      # the next run completes it
        rep = report_json(tmp_path)[-1]
        assert rep["summary"]["copied"] == 1 and rep["summary"]["lag (tags)"] == 0


def test_one_run_per_rule(regs, tmp_path, monkeypatch):
    import flows.replicate as fr
    from regkeeper.config import load_config
    from regkeeper.runstate import Owner, RunState
    src, dst = regs
    images.push_image(src.url, "l/app", "v1", verify=False)
    cfg = write_config(tmp_path, src.url, dst.url)
    monkeypatch.setattr(fr, "LOCK_WAIT_SECONDS", 1)
    fr.replicate(config_path=str(cfg), dry_run=True)        # takes and releases the rule's lease
    other = RunState.for_config(load_config(cfg), Owner.current("replicate", "other-live-run"))
    lease = other.lease("replicate-rule-to-eu")              # another live run holds it
    assert lease.acquire().ok
    with lease.held():
        with pytest.raises(RefusedError) as ei:
            fr.replicate(config_path=str(cfg))
        assert "still in progress" in str(ei.value)
        assert "other-live-run" in str(ei.value) and "this run did nothing" in str(ei.value)
    assert images.catalog(dst.url, verify=False) == []       # the refused run wrote nothing
    assert fr.replicate(config_path=str(cfg))["status"] == "ok"
