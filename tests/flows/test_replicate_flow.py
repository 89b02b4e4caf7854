"""The replicate flow under Prefect: reports, artifacts, failure and refusal paths, the CLI."""

import json
from pathlib import Path

import pytest

from regkeeper.errors import RefusedError, RegkeeperError
from tests.support import images
from tests.support.faultproxy import FaultProxy
from tests.support.registry import RegistryServer
from tests.support.reports import report_docs

WRITES = {"PUT", "POST", "PATCH", "DELETE"}


@pytest.fixture
def regs(tmp_path):
    src = RegistryServer(tmp_path / "src")
    try:
        dst = RegistryServer(tmp_path / "dst")
        try:
            yield src, dst
        finally:
            dst.stop()
    finally:
        src.stop()  # also when dst could not start


def write_config(tmp_path: Path, src_url: str, dst_url: str, extra: str = "", sections: str = "") -> Path:
    cfg = tmp_path / "regkeeper.yaml"
    cfg.write_text(f"""
mirrorRepositories:
- {{name: primary, url: {src_url}, tls: {{verify: false}}, retries: 1}}
- {{name: eu, url: {dst_url}, tls: {{verify: false}}, retries: 1}}
replication:
- {{name: to-eu, from: primary, to: [eu], prefix: eu{extra}}}
reports: {{directory: {tmp_path / "reports"}}}
cacheDir: {tmp_path / "cache"}
{sections}""")
    return cfg


def report_json(tmp_path: Path) -> list[dict]:
    return report_docs(tmp_path / "reports" / "replicate")  # in the order the runs started


@pytest.fixture(autouse=True)
def keep_harness_server(monkeypatch):
    """The CLI stops Prefect's temporary servers when a run ends; called in-process here, that
    would stop the session's test harness server too."""
    import app.cli

    monkeypatch.setattr(app.cli, "_stop_ephemeral_server", lambda: None, raising=False)


def test_flow_dry_run_then_copy_then_warm(regs, tmp_path, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from app.cli import main
    from flows.replicate import replicate

    src, dst = regs
    images.push_many(src.url, n_repos=2, tags_per_repo=3, prefix="svc/app", verify=False, seed=1)
    idx = images.push_index(src.url, "svc/multi", "v1", verify=False)
    images.push_signature(src.url, "svc/multi", idx.digest, verify=False)
    cfg = write_config(tmp_path, src.url, dst.url)

    dst.clear_access_log()
    out = replicate(config_path=str(cfg), dry_run=True)
    assert out["status"] == "dry-run" and out["summary"]["lag (tags)"] == 8
    assert [e for e in dst.access_log() if e.method in WRITES] == []

    state = replicate(config_path=str(cfg), rule="to-eu", return_state=True)
    out = state.result()
    assert out["status"] == "ok" and out["summary"]["copied"] == 8 and out["summary"]["lag (tags)"] == 0
    assert images.head_manifest(dst.url, "eu/svc/multi", "v1", verify=False) == idx.digest
    main_csv = Path(out["files"]["csv"]).read_text().splitlines()
    assert main_csv[0].startswith("repository,target_repository,copied,skipped,failed")
    assert any(line.startswith("svc/app-0000,eu/svc/app-0000,3,0,0") for line in main_csv)
    with get_client(sync_client=True) as client:  # this run's artifacts (the server holds every test's)
        art = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    keys = {a.key for a in art}
    assert {"replication-eu", "replication-eu-table"} <= keys
    (table,) = [a for a in art if a.key == "replication-eu-table"]
    assert "svc/app-0001" in str(table.data) and "lag" in str(table.data)

    # warm, through the CLI: nothing to copy, no writes, exit 0
    dst.clear_access_log()
    capsys.readouterr()
    assert main(["run", "replicate", "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert '"copied": 0' in printed and '"in sync (skipped)": 8' in printed
    assert [e for e in dst.access_log() if e.method in WRITES] == []


def test_flow_failure_publishes_report_then_fails(regs, tmp_path):
    from app.cli import main
    from flows.replicate import replicate

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
        assert main(["run", "replicate", "--config", str(cfg)]) == 1  # still failing: exit 1
        proxy.clear_faults()
        assert main(["run", "replicate", "--config", str(cfg)]) == 0  # the next run completes it
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
    fr.replicate(config_path=str(cfg), dry_run=True)  # takes and releases the rule's lease
    other = RunState.for_config(load_config(cfg), Owner.current("replicate", "other-live-run"))
    lease = other.lease("replicate-rule-to-eu")  # another live run holds it
    assert lease.acquire().ok
    with lease.held():
        with pytest.raises(RefusedError) as ei:
            fr.replicate(config_path=str(cfg))
        assert "still in progress" in str(ei.value)
        assert "other-live-run" in str(ei.value) and "this run did nothing" in str(ei.value)
    assert images.catalog(dst.url, verify=False) == []  # the refused run wrote nothing
    assert fr.replicate(config_path=str(cfg))["status"] == "ok"


# ---------------------------------------------------------------- deleteExtraneous


def drop(url: str, repo: str, tag: str) -> None:
    """The source drops a tag (DELETE by its digest)."""
    assert (
        images.delete_manifest(url, repo, images.head_manifest(url, repo, tag, verify=False), verify=False)
        == 202
    )


def test_flow_cap_is_the_rules_own_max_delete_fraction(regs, tmp_path):
    from flows.replicate import replicate

    src, dst = regs
    for i in range(10):
        images.push_image(src.url, "cap/app", f"v{i}", verify=False, seed=f"c{i}")
    loose = write_config(tmp_path, src.url, dst.url, ", deleteExtraneous: true")
    assert replicate(config_path=str(loose))["summary"]["copied"] == 10
    for i in range(3):  # the source drops 3 of 10: 30%
        drop(src.url, "cap/app", f"v{i}")
    before = images.list_tags(dst.url, "eu/cap/app", verify=False)

    # gc's cap (0.9) would allow it; the rule's own (0.2) refuses
    cfg = write_config(
        tmp_path,
        src.url,
        dst.url,
        ", deleteExtraneous: true, maxDeleteFraction: 0.2",
        sections="gc: {maxDeleteFraction: 0.9}\n",
    )
    dst.clear_access_log()
    with pytest.raises(RefusedError) as ei:
        replicate(config_path=str(cfg))
    why = str(ei.value)
    assert "to-eu -> eu" in why and "rule to-eu -> target eu" in why and "3/10 tags (30%)" in why
    assert "more than 20% (maxDeleteFraction of replication rule to-eu)" in why
    assert [e for e in dst.access_log() if e.method == "DELETE"] == []
    assert images.list_tags(dst.url, "eu/cap/app", verify=False) == before
    assert report_json(tmp_path)[-1]["status"] == "refused"

    # gc's cap (0.1) would refuse it; the rule's own (0.3) allows it
    cfg = write_config(
        tmp_path,
        src.url,
        dst.url,
        ", deleteExtraneous: true, maxDeleteFraction: 0.3",
        sections="gc: {maxDeleteFraction: 0.1}\n",
    )
    out = replicate(config_path=str(cfg))
    assert out["status"] == "ok" and out["summary"]["deleted"] == 3
    assert sorted(images.list_tags(dst.url, "eu/cap/app", verify=False)) == [f"v{i}" for i in range(3, 10)]

    # force overrides the rule's cap
    for i in (3, 4):  # 2 of the 7 left: 29% > 20%
        drop(src.url, "cap/app", f"v{i}")
    cfg = write_config(
        tmp_path,
        src.url,
        dst.url,
        ", deleteExtraneous: true, maxDeleteFraction: 0.2",
        sections="gc: {maxDeleteFraction: 0.9}\n",
    )
    with pytest.raises(RefusedError):
        replicate(config_path=str(cfg))
    out = replicate(config_path=str(cfg), force=True)
    assert out["status"] == "ok" and out["summary"]["deleted"] == 2
    assert sorted(images.list_tags(dst.url, "eu/cap/app", verify=False)) == [f"v{i}" for i in range(5, 10)]


def test_flow_deletes_disabled_on_the_target_stop_every_batch(regs, tmp_path, monkeypatch):
    import flows.replicate as fr
    from tests.support.registry import RegistryServer

    src, _ = regs
    nodel = RegistryServer(tmp_path / "nodelete", delete_enabled=False)
    try:
        repos = [f"d/app{i}" for i in range(3)]
        for repo in repos:
            for i in range(3):
                images.push_image(src.url, repo, f"v{i}", verify=False, seed=f"{repo}{i}")
        cfg = write_config(tmp_path, src.url, nodel.url, ", deleteExtraneous: true, concurrency: 1")
        assert fr.replicate(config_path=str(cfg))["summary"]["copied"] == 9
        for repo in repos:
            images.push_image(nodel.url, f"eu/{repo}", "old", verify=False, seed=f"{repo}old")
        before = {repo: sorted(images.list_tags(nodel.url, f"eu/{repo}", verify=False)) for repo in repos}
        monkeypatch.setattr(fr, "COPY_BATCH", 1)  # one delete task per repository
        nodel.clear_access_log()
        with pytest.raises(RegkeeperError) as ei:
            fr.replicate(config_path=str(cfg))
        assert "deletes are disabled" in str(ei.value)
        deletes = [e for e in nodel.access_log() if e.method == "DELETE"]
        assert len(deletes) == 1 and deletes[0].status == 405  # no other batch tried
        rep = report_json(tmp_path)[-1]
        assert rep["status"] == "failed"
        notes = rep["notes"]
        assert any(n.startswith("deletes stopped:") and "storage.delete.enabled" in n for n in notes)
        failed_csv = Path(rep["files"]["csv:failed items"]).read_text()
        assert failed_csv.count("not attempted") == 2
        after = {repo: sorted(images.list_tags(nodel.url, f"eu/{repo}", verify=False)) for repo in repos}
        assert after == before
    finally:
        nodel.stop()


def test_flow_persistent_503_costs_exactly_the_transport_attempts(regs, tmp_path):
    """No layer multiplies another: a blob the source keeps answering 503 for is requested
    ``retries + 1`` times in the whole run (not x item retries x task retries); only the items
    that need it fail, naming it. A call that ran out of retries inside a task (the source
    catalog) is not retried by Prefect either."""
    import hashlib

    from flows.replicate import replicate

    src, dst = regs
    shared = hashlib.sha256(b"flow-shared").digest() * 1024
    bad = images.sha256_digest(shared)
    images.push_image(src.url, "f/app", "v1", layers=[shared, b"one"], verify=False, seed=1)
    images.push_image(src.url, "f/app", "v2", layers=[shared, b"two"], verify=False, seed=2)
    images.push_image(src.url, "f/app", "v3", verify=False, seed=3)
    with FaultProxy(src.url) as sproxy:
        sproxy.add_fault("status", status=503, method="GET", path_regex=rf"/blobs/{bad}$", times=1000)
        cfg = write_config(tmp_path, sproxy.url, dst.url)  # retries: 1 -> 2 attempts
        with pytest.raises(RegkeeperError):
            replicate(config_path=str(cfg))
        assert len([r for r in sproxy.requests if r.method == "GET" and r.path.endswith(bad)]) == 2
        rep = report_json(tmp_path)[-1]
        assert rep["status"] == "failed" and rep["summary"]["failed"] == 2 and rep["summary"]["copied"] == 1
        failed_csv = Path(rep["files"]["csv:failed items"]).read_text()
        assert failed_csv.count(f"blob {bad}") >= 2 and "after 2 attempts" in failed_csv

        sproxy.clear_faults()
        sproxy.clear()
        sproxy.add_fault("status", status=503, method="GET", path_regex=r"^/v2/_catalog", times=1000)
        with pytest.raises(RegkeeperError) as ei:
            replicate(config_path=str(cfg))
        assert "HTTP 503" in str(ei.value) and "after 2 attempts" in str(ei.value)
        assert len([r for r in sproxy.requests if r.path.startswith("/v2/_catalog")]) == 2


def test_flow_carries_untagged_referrers_to_a_registry_without_the_api(
    referrers_registry_factory, registry_factory, tmp_path
):
    """Through Prefect: an SBOM the source's referrers API lists (untagged) is copied after its
    image, listed in the sha256-<hex> index the flow writes on distribution 2.8, read back by the
    verify step, and reported with both registries' referrers modes; the next run copies nothing."""
    from flows.replicate import replicate

    src, dst = referrers_registry_factory(), registry_factory()
    img = images.push_image(src.url, "svc/signed", "v1", media="oci", seed="flow-referrers")
    sbom = images.push_referrer(src.url, "svc/signed", img.descriptor, fallback_tag=False)
    cfg = write_config(tmp_path, src.url, dst.url)

    out = replicate(config_path=str(cfg))
    assert out["status"] == "ok" and out["summary"]["referrers copied"] == 1
    summary = report_json(tmp_path)[-1]["summary"]
    assert summary["referrers mode (source)"] == "referrers API"
    assert summary["referrers mode (target)"].startswith("sha256-<hex> tag schema")
    index = json.loads(images.get_manifest(dst.url, "eu/svc/signed", img.digest.replace(":", "-"))[0])
    assert [m["digest"] for m in index["manifests"]] == [sbom.digest]
    assert images.get_manifest(dst.url, "eu/svc/signed", sbom.digest)[0] == sbom.manifest_bytes

    dst.clear_access_log()
    out = replicate(config_path=str(cfg))
    assert out["status"] == "ok" and out["summary"]["copied"] == 0
    assert out["summary"]["referrers copied"] == 0
    assert [e for e in dst.access_log() if e.method in WRITES] == []
