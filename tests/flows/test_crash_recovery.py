"""Runs killed with SIGKILL (as an OOM kill or an evicted pod would) at a deterministic point,
then the next run: nothing a dead run leaves behind needs a person.

Each run is the real command line (``python -m app.cli run <job>``) in its own process group,
against the session's Prefect test server (PREFECT_API_URL), and the whole group is killed:
inside the read-only window (its garbageCollect step writes a marker and sleeps), in the middle
of gc deletes, of a backup and of a replication (the fault proxy slows the registry; the kill
comes after a count of requests in its record).
"""

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from regkeeper.config import load_config
from regkeeper.runstate import read_window
from tests.support import images
from tests.support.procs import wait_until
from tests.support.reports import report_docs
from tests.support.rkconfig import RegistryControl, registry_entry, write_config

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict:
    from prefect.settings import PREFECT_API_URL

    return dict(
        os.environ,
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PYTHONPATH=str(ROOT),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )


class Cli:
    """``python -m app.cli ARGS`` in a new session (its own process group)."""

    def __init__(self, tmp_path: Path, *args: str):
        self.log = tmp_path / f"cli-{args[1] if len(args) > 1 else args[0]}-{os.urandom(3).hex()}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
                cwd=tmp_path,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_group(self) -> None:
        """SIGKILL the whole process group (the run and any child it started), then reap."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    c = Cli(tmp_path, *args)
    try:
        rc = c.wait()
    finally:
        c.kill_group()
    return rc, c.output()


def reports(tmp_path: Path, flow: str) -> list[dict]:
    return report_docs(tmp_path / "reports" / flow, "2*-*.json")  # in the order the runs started


def age(reg, repo: str, tag: str, days: float) -> None:
    t = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).timestamp()
    link = Path(reg.root) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
    link = link / "current" / "link"
    os.utime(link, (t, t))


@pytest.fixture
def killed():
    """Every Cli started by a test is stopped (its group killed) at teardown."""
    started: list[Cli] = []
    yield started
    for c in started:
        c.kill_group()


def test_killed_inside_read_only_window_next_run_of_another_job_restores_it(
    registry_factory, pushgateway, webhook_receiver, tmp_path, killed
):
    reg = registry_factory()
    for i in range(3):
        images.push_image(reg.url, "crash/ro", f"v{i}", layers=[os.urandom(50_000)])
        age(reg, "crash/ro", f"v{i}", 10 - i)
    ctl = RegistryControl(reg)
    marker = tmp_path / "in-garbage-collect"
    rc = ctl.reclaim_config()
    rc["garbageCollect"] = [
        "sh",
        "-c",
        f"touch {marker}; sleep 120; exec /usr/bin/docker-registry garbage-collect {reg.config_path}",
    ]
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, reclaim=rc)],
        gc={"days": 1, "keepLast": 1, "maxDeleteFraction": 1.0},
        capacity={"pushgateway": pushgateway.url, "notify": [{"webhook": webhook_receiver.url + "/hook"}]},
    )
    try:
        gc = Cli(tmp_path, "run", "gc", "--config", str(cfg))
        killed.append(gc)
        state_path = load_config(cfg).state_path()

        def in_garbage_collect() -> bool:
            # the command runs (marker) and the run recorded the step (written just after the spawn)
            w = read_window(state_path, "local-registry") if marker.exists() else None
            return w is not None and w.step == "garbageCollect"

        wait_until(in_garbage_collect, timeout=120, what="garbage-collect to start")
        gc.kill_group()  # killed inside the read-only window
        assert ctl.calls == ["readonly"]
        with pytest.raises(images.PushError, match="405"):
            images.push_image(reg.url, "crash/push", "x")  # every push fails now
        w = read_window(load_config(cfg).state_path(), "local-registry")
        assert w is not None and w.owner.pid == gc.pid and w.step == "garbageCollect"

        code, out = run(tmp_path, "run", "capacity", "--config", str(cfg))
        assert code == 0, out[-3000:]
    finally:
        ctl.stop()
    rep = reports(tmp_path, "capacity")[-1]
    note = rep["notes"][0]
    assert note.startswith(
        f"recovered: registry local-registry was left read-only by run {w.run} "
        f"(pid {gc.pid}, started {w.started}); readWrite run"
    ), rep["notes"]
    assert ctl.calls == ["readonly", "readwrite"] and rep["summary"]["takes writes"] == "yes"
    assert read_window(load_config(cfg).state_path(), "local-registry") is None
    assert images.push_image(reg.url, "crash/push", "x").digest  # pushes work again
    alert = webhook_receiver.wait_for(1)[0].json
    assert alert["text"].startswith("recovered: registry local-registry") and str(gc.pid) in alert["text"]
    text = requests.get(pushgateway.url + "/metrics", timeout=10).text
    counts = [
        ln.rsplit(" ", 1)[1]
        for ln in text.splitlines()
        if ln.startswith("regkeeper_readonly_recovered_total{") and 'registry="local-registry"' in ln
    ]
    assert counts == ["1"]


def test_killed_in_the_middle_of_gc_deletes_next_gc_finishes(
    registry_factory, fault_proxy_factory, tmp_path, killed
):
    reg = registry_factory()
    pushed = {}
    for i in range(8):
        pushed[f"v{i}"] = images.push_image(reg.url, "crash/gc", f"v{i}", layers=[os.urandom(30_000)])
        age(reg, "crash/gc", f"v{i}", 20 - i)
    doomed, kept = [f"v{i}" for i in range(6)], ["v6", "v7"]  # days 1, keepLast 2
    proxy = fault_proxy_factory(reg.url)
    proxy.add_fault("slow", method="DELETE", delay=1.5, times=1000)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, url=proxy.url, concurrency=1)],
        gc={"days": 1, "keepLast": 2, "maxDeleteFraction": 1.0},
    )
    gc = Cli(tmp_path, "run", "gc", "--config", str(cfg))
    killed.append(gc)
    wait_until(
        lambda: sum(r.method == "DELETE" for r in proxy.requests) >= 2, timeout=120, what="two deletes"
    )
    gc.kill_group()  # killed in the middle of the deletes
    left = [t for t in doomed if images.head_manifest(reg.url, "crash/gc", t) is not None]
    assert 0 < len(left) < len(doomed)
    proxy.clear_faults()

    code, out = run(tmp_path, "run", "gc", "--config", str(cfg))
    assert code == 0, out[-3000:]
    for t in doomed:  # the next run finished the deletes
        assert images.head_manifest(reg.url, "crash/gc", t) is None
    for t in kept:  # nothing kept is lost
        img = pushed[t]
        assert images.head_manifest(reg.url, "crash/gc", t) == img.digest
        for d in [img.config_digest, *img.layer_digests]:
            assert images.blob_exists(reg.url, "crash/gc", d)
    assert reports(tmp_path, "gc")[-1]["status"] == "ok"


def test_killed_in_the_middle_of_a_backup_no_snapshot_then_the_next_completes(
    registry_factory, fault_proxy_factory, tmp_path, killed
):
    from regkeeper.backup import list_snapshots, load_snapshot, open_target
    from regkeeper.errors import RegkeeperError

    reg = registry_factory()
    pushed = {
        f"crash/bk-{i}": images.push_image(reg.url, f"crash/bk-{i}", "v1", layers=[os.urandom(20_000)])
        for i in range(6)
    }
    proxy = fault_proxy_factory(reg.url)
    proxy.add_fault("slow", method="GET", path_regex=r"/manifests/", delay=1.5, times=1000)
    target = f"file://{tmp_path / 'backups'}"
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, url=proxy.url, concurrency=1)],
        backup={"target": target, "keep": 5},
    )
    bk = Cli(tmp_path, "run", "backup", "--config", str(cfg))
    killed.append(bk)
    wait_until(
        lambda: sum(r.method == "GET" and "/manifests/" in r.path for r in proxy.requests) >= 2,
        timeout=120,
        what="two manifest reads",
    )
    bk.kill_group()  # killed in the middle of the backup
    store = open_target(target, load_config(cfg).backup)
    assert store.list("inflight/local-registry/")  # the dead run had begun writing
    assert list_snapshots(store, "local-registry") == []  # no partial snapshot is listed
    with pytest.raises(RegkeeperError):
        load_snapshot(store, "local-registry", "latest")  # nor taken for a complete one
    code, out = run(tmp_path, "snapshots", "list", "--config", str(cfg))
    assert code == 0 and "no snapshots" in out
    proxy.clear_faults()

    code, out = run(tmp_path, "run", "backup", "--config", str(cfg))
    assert code == 0, out[-3000:]
    (snap,) = list_snapshots(store, "local-registry")
    assert {r: snap.tags(r) for r in pushed} == {r: {"v1": img.digest} for r, img in pushed.items()}
    images.delete_manifest(reg.url, "crash/bk-0", pushed["crash/bk-0"].digest)
    code, out = run(tmp_path, "run", "restore", "--config", str(cfg), "--apply")
    assert code == 0, out[-3000:]
    assert images.head_manifest(reg.url, "crash/bk-0", "v1") == pushed["crash/bk-0"].digest


def test_killed_in_the_middle_of_a_replication_next_run_takes_over_and_completes(
    registry_factory, fault_proxy_factory, tmp_path, killed
):
    src, dst = registry_factory(), registry_factory()
    pushed = {
        f"crash/rep-{i}": images.push_image(src.url, f"crash/rep-{i}", "v1", layers=[os.urandom(40_000)])
        for i in range(6)
    }
    proxy = fault_proxy_factory(src.url)
    proxy.add_fault("slow", method="GET", path_regex=r"/blobs/sha256:", delay=1.5, times=1000)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [
            registry_entry(src, "primary", url=proxy.url, concurrency=1, storage=False),
            registry_entry(dst, "eu", storage=False),
        ],
        replication=[{"name": "all", "from": "primary", "to": ["eu"], "concurrency": 1}],
    )
    rep = Cli(tmp_path, "run", "replicate", "--config", str(cfg))
    killed.append(rep)
    wait_until(
        lambda: sum(r.method == "GET" and "/blobs/" in r.path for r in proxy.requests) >= 2,
        timeout=120,
        what="two blob reads",
    )
    rep.kill_group()  # killed in the middle of the copy
    proxy.clear_faults()

    code, out = run(tmp_path, "run", "replicate", "--config", str(cfg))
    assert code == 0, out[-3000:]  # not blocked by the dead run
    (report,) = [r for r in reports(tmp_path, "replicate")]
    assert any(
        n.startswith("took over lease replicate-rule-all from run ") and f"pid {rep.pid}" in n
        for n in report["notes"]
    ), report["notes"]
    for repo, img in pushed.items():  # the target equals the source
        assert images.head_manifest(dst.url, repo, "v1") == img.digest
        for d in [img.config_digest, *img.layer_digests]:
            assert images.blob_exists(dst.url, repo, d)
