"""Every run of every job recovers first: a read-only window left by a run that is gone is
closed (its readWrite runs) before the job's plan, and the job's report says so."""

import subprocess
import sys
from dataclasses import replace

import pytest

from flows.jobs import JOBS, flow_of
from regkeeper.config import load_config
from regkeeper.runstate import Lease, Owner, Window, lease_name, read_window, save_window
from regkeeper.runstate.owner import pid_start
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


@pytest.fixture(autouse=True)
def keep_harness_server(monkeypatch):
    import app.cli

    monkeypatch.setattr(app.cli, "_stop_ephemeral_server", lambda: None, raising=False)


def dead_window(root, registry: str, touched) -> Owner:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = pid_start(p.pid)
    p.wait()
    owner = replace(Owner.current("gc", "run-that-died"), pid=p.pid, pid_start=start)
    lease = Lease(root, lease_name(registry), owner, 60)
    assert lease.acquire().ok  # never released: the run was killed
    save_window(
        root,
        Window(
            registry=registry,
            owner=owner,
            started=owner.started,
            read_write=[sys.executable, "-c", f"open({str(touched)!r}, 'a').write('rw')"],
            timeout=30,
            lease=lease.name,
            lease_token=lease.token,
            step="garbageCollect",
        ),
    )
    return owner


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_job_recovers_a_dead_runs_read_only_window_first(job, registry, tmp_path):
    images.push_image(registry.url, f"hook/{job}", "v1")
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry, storage=False), {"name": "other", "url": registry.url}],
        gc={"include": [f"hook/{job}"]},
        tiers=[{"name": "base", "match": ["**"], "keep": "forever"}],
        replication=[
            {"from": "local-registry", "to": ["other"], "include": [f"hook/{job}"], "prefix": "copy"}
        ],
        backup={"target": f"file://{tmp_path / 'backups'}"},
        capacity={"writeCheck": False},
        pulls={"store": f"sqlite:///{tmp_path / 'pulls.sqlite'}"},  # backtest reads the pull store
        quarantine={"window": "7d"} if job == "undo" else None,  # undo reads the quarantine
    )
    root = load_config(cfg).state_path()
    touched = tmp_path / "read-write-ran"
    dead = dead_window(root, "other", touched)
    kw = JOBS[job].kwargs(config_path=str(cfg), dry_run=True)
    if job == "nightly":
        kw["jobs"] = ["capacity"]
    if job == "undo":  # a run that held nothing: the undo fails after recovering, as it should
        kw["run_id"] = "run-with-nothing-held"
    state = flow_of(job)(**kw, return_state=True)
    out = state.result(raise_on_failure=False)
    reports = out.reports if isinstance(out, BaseException) else (out.get("reports") or [out])
    assert touched.read_text() == "rw" and read_window(root, "other") is None
    first = reports[0]["notes"][0]
    assert first.startswith(
        f"recovered: registry other was left read-only by run run-that-died "
        f"(pid {dead.pid}, started {dead.started}); readWrite run"
    ), (job, reports[0]["notes"])
