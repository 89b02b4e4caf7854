"""The command line as a user runs it: exit codes and the last lines that say why."""

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


def rk(*args, prefect: dict[str, str] | None = None, cwd=None, timeout=180):
    """``python -m app.cli ARGS`` as a user runs it. A command that runs a flow passes
    ``prefect=prefect_api`` (the session's server, tests/conftest.py); without it there is no
    PREFECT_API_URL at all and a flow run starts Prefect's temporary local server."""
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    env.update(prefect or {})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def test_inventory_formats_and_check(registry, tmp_path):
    img = images.push_image(registry.url, "cli/app", "v1")
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(registry)])
    out = rk("inventory", "--config", str(cfg), "--include", "cli/**", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["repositories"]["cli/app"]["tags"] == {"v1": img.digest}
    csv = rk("inventory", "--config", str(cfg), "--include", "cli/**", "--format", "csv")
    assert csv.returncode == 0 and f"cli/app,v1,{img.digest}" in csv.stdout
    table = rk("inventory", "--config", str(cfg), "--include", "cli/**")
    assert table.returncode == 0 and "cli/app" in table.stdout and "1 repositories, 1 tags" in table.stderr
    chk = rk("check", "--config", str(cfg))
    assert chk.returncode == 0 and "local-registry: ok" in chk.stdout


def test_config_error_exit_2(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("mirrorRepositories:\n- name: a\n  type: local\n  urll: http://127.0.0.1:1\n")
    out = rk("inventory", "--config", str(p))
    assert out.returncode == 2
    assert "mirrorRepositories[0].urll: unknown key (did you mean 'url'?)" in out.stderr


def test_unreachable_registry_exit_1(tmp_path, dead_port):
    port = dead_port
    cfg = write_config(
        tmp_path / "r.yaml", [{"name": "gone", "url": f"http://127.0.0.1:{port}", "retries": 0}]
    )
    out = rk("inventory", "--config", str(cfg))
    assert out.returncode == 1
    assert "registry 'gone'" in out.stderr and "cannot connect" in out.stderr


def test_quickstart_run_without_prefect_api_url_starts_the_temporary_server_and_writes_the_report(
    registry_factory, tmp_path
):
    """The README's path for a first run: no PREFECT_API_URL at all and a fresh PREFECT_HOME (no
    profile, no database). The run starts Prefect's temporary local server, works, writes its
    report, and lands in the local Prefect database. The one CLI test that pays that start:
    every other runs its flows on the session's server (``prefect_api``)."""
    registry = registry_factory()
    images.push_image(registry.url, "cli/quick", "v1")
    images.push_image(registry.url, "cli/quick", "v2")
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry)],
        gc={"days": 0, "keepLast": 1, "protect": [], "include": ["cli/quick"]},
    )
    home = tmp_path / "prefect-home"
    out = rk("run", "gc", "--config", str(cfg), "--dry-run", prefect={"PREFECT_HOME": str(home)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Prefect's temporary local server start (no PREFECT_API_URL)" in out.stderr
    assert (tmp_path / "reports" / "index.html").exists()
    html = out.stdout.split("report: ", 1)[1].splitlines()[0]
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "reports" / "gc").glob("2*-*.json")]
    assert Path(html).is_file() and Path(html).with_suffix(".json").is_file()
    assert report["status"] == "dry-run"
    assert (report["summary"]["tags scanned"], report["summary"]["tags to delete"]) == (2, 1)
    assert sorted(images.list_tags(registry.url, "cli/quick")) == ["v1", "v2"]  # a dry run
    with sqlite3.connect(home / "prefect.db") as db:  # the run is in the local database
        names = [n for (n,) in db.execute("SELECT f.name FROM flow_run r JOIN flow f ON r.flow_id = f.id")]
    assert names == ["gc"]


def runs_on_the_server(flow: str, config_path, since: dt.datetime) -> list[str]:
    """The final states of ``flow``'s runs on the session's server that started after ``since``
    with this config (a unique tmp path): this test's runs only, however busy the server is."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
        )
    return sorted(r.state.type.value for r in runs if r.parameters.get("config_path") == str(config_path))


def test_run_gc_on_a_prefect_server_then_fail_closed_refusal(registry, tmp_path, prefect_api, dead_port):
    """The CLI with PREFECT_API_URL: its runs are on that server (the session's), a dry run
    exits 0 with its report, an unreadable Kubernetes with failClosed refuses (exit 3)."""
    since = dt.datetime.now(dt.UTC)
    images.push_image(registry.url, "cli/gc", "v1")
    cfg = write_config(
        tmp_path / "regkeeper.yaml", [registry_entry(registry)], gc={"days": 30, "include": ["cli/**"]}
    )
    out = rk("run", "gc", "--config", str(cfg), "--dry-run", prefect=prefect_api)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "report:" in out.stdout and (tmp_path / "reports" / "index.html").exists()
    assert "(Prefect server connect, flow run creation)" in out.stderr
    # Kubernetes unreachable + failClosed: refuse (exit 3) and say which context and why
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "prod",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{dead_port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    cfg2 = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry)],
        gc={"days": 30, "include": ["cli/**"]},
        kubernetes={"kubeconfig": str(kc), "failClosed": True, "timeout": "3s"},
    )
    out = rk("run", "gc", "--config", str(cfg2), prefect=prefect_api)
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    last = out.stderr.strip().splitlines()[-1]
    assert "refused" in last and "prod" in last
    assert "not-a-real-token" not in out.stderr + out.stdout
    assert runs_on_the_server("gc", cfg.resolve(), since) == ["COMPLETED", "FAILED"]
