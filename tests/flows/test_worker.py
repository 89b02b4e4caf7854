"""A Prefect worker executes scheduled deployment runs: a real ``prefect server start`` on a free
127.0.0.1 port, a ``process`` work pool, gc deployed from this source tree into it, a run
scheduled a few seconds ahead, and ``prefect worker start --pool ... --run-once`` as a
subprocess: the run reaches Completed and its gc report holds the dry-run summary. Then a run
killed with SIGKILL under a worker: the worker marks it Crashed and the deployment's
concurrency slot (concurrency_limit 1) goes to the next scheduled run."""

import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.prefectserver import start_prefect_server
from tests.support.procs import ManagedProcess, wait_until
from tests.support.rkconfig import registry_entry, write_config

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Prefect's intervals, shortened (what happens is the same, sooner): a run refused its
# deployment's slot is rescheduled this far ahead (default 30 s) ...
SLOT_WAIT = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5"}
# ... and a worker asks the server for due runs this often (default 10 s)
WORKER_POLL = {"PREFECT_WORKER_QUERY_SECONDS": "2"}


def prefect_env(home: Path, api_url: str | None = None) -> dict:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PREFECT_API_KEY", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``prefect server start`` on its own database, stopped by its PID."""
    home = tmp_path_factory.mktemp("prefect-server")
    proc, url = start_prefect_server(home, prefect_env(home) | SLOT_WAIT)
    try:
        yield url
    finally:
        proc.stop(timeout=15)


@pytest.fixture
def api(server):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server}):
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as c:
            yield c


def make_pool(api, name: str) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    api.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=True)
    return name


def deploy_gc(api, pool: str, name: str, parameters: dict, concurrency_limit: int | None = None):
    """gc from this source tree (a local path: the worker runs it in place) into ``pool``."""
    from prefect import flow

    gc = flow.from_source(source=str(ROOT), entrypoint="flows/gc.py:gc")
    return gc.deploy(
        name=name,
        work_pool_name=pool,
        parameters=parameters,
        concurrency_limit=concurrency_limit,
        build=False,
        push=False,
        print_next_steps=False,
    )


def schedule(api, deployment_id, in_seconds: float, parameters: dict | None = None):
    from prefect.states import Scheduled

    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=in_seconds)
    return api.create_flow_run_from_deployment(
        deployment_id, parameters=parameters, state=Scheduled(scheduled_time=when)
    )


def state_of(api, run_id) -> str:
    return api.read_flow_run(run_id).state.type.value


def worker(server: str, pool: str, home: Path, *extra: str) -> ManagedProcess:
    return ManagedProcess(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", *extra],
        env=prefect_env(home, server) | WORKER_POLL,
        log_path=home / f"worker-{pool}.log",
        cwd=ROOT,
    ).start()


def gc_config(tmp_path: Path, reg, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    return write_config(
        d / "regkeeper.yaml",
        [registry_entry(reg, storage=False)],
        gc={"registry": "local-registry", "days": 0, "keepLast": 1, "protect": []},
    )


def test_worker_runs_a_scheduled_gc_dry_run(server, api, registry_factory, tmp_path):
    reg = registry_factory()
    images.push_many(reg.url, n_repos=2, tags_per_repo=3, prefix="wk/app", verify=False, seed=4)
    cfg = gc_config(tmp_path, reg, "once")
    pool = make_pool(api, "regkeeper-process")
    dep = deploy_gc(api, pool, "gc-dry-run", {"dry_run": True, "config_path": str(cfg)})
    run = schedule(api, dep, in_seconds=3)
    assert state_of(api, run.id) == "SCHEDULED"

    w = worker(server, pool, tmp_path, "--run-once")
    try:
        # --run-once: one poll (it takes runs due within the prefetch window), then it waits
        # for the runs it started and exits
        wait_until(lambda: not w.running(), timeout=240, interval=0.5, what="the worker to exit")
    finally:
        w.stop(timeout=10)
    final = api.read_flow_run(run.id)
    assert final.state.type.value == "COMPLETED", (final.state, w.log_tail(60))
    (report,) = [json.loads(p.read_text()) for p in (cfg.parent / "reports" / "gc").glob("*.json")]
    assert report["status"] == "dry-run"
    assert report["summary"]["tags scanned"] == 6 and report["summary"]["tags to delete"] == 4
    assert all(len(images.list_tags(reg.url, r, verify=False)) == 3 for r in ("wk/app-0000", "wk/app-0001"))


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_sigkilled_run_does_not_keep_the_concurrency_slot(server, api, registry_factory, tmp_path):
    from tests.support.faultproxy import FaultProxy

    reg = registry_factory()
    images.push_many(reg.url, n_repos=1, tags_per_repo=2, prefix="kill/app", verify=False, seed=6)
    fast = gc_config(tmp_path, reg, "fast")
    with FaultProxy(reg.url) as proxy:
        proxy.add_fault("slow", delay=120, path_regex=r"/v2/_catalog", times=10)  # run A hangs here
        slow = tmp_path / "slow"
        slow.mkdir()
        write_config(
            slow / "regkeeper.yaml",
            [{"name": "local-registry", "url": proxy.url, "timeout": "300s", "retries": 0}],
            gc={"registry": "local-registry"},
        )
        pool = make_pool(api, "regkeeper-kill")
        dep = deploy_gc(
            api, pool, "gc-limited", {"dry_run": True, "config_path": str(fast)}, concurrency_limit=1
        )
        a = schedule(api, dep, 0, {"config_path": str(slow / "regkeeper.yaml")})
        w = worker(server, pool, tmp_path)
        try:
            wait_until(
                lambda: state_of(api, a.id) == "RUNNING", timeout=180, interval=0.5, what="run A running"
            )
            b = schedule(api, dep, 0)  # due now, same deployment: waits for A's slot
            engine = wait_until(
                lambda: [p for p in descendants(w.pid) if "prefect" in cmdline(p) and p != w.pid],
                timeout=120,
                what="run A's process",
            )
            # the worker takes B and the server refuses it A's slot: B goes back to Scheduled,
            # named AwaitingConcurrencySlot, and is retried
            wait_until(
                lambda: api.read_flow_run(b.id).state.name == "AwaitingConcurrencySlot",
                timeout=90,
                interval=0.5,
                what="run B waiting for the deployment's slot",
            )
            assert state_of(api, a.id) == "RUNNING"
            for p in engine:
                os.kill(p, signal.SIGKILL)
            t0 = time.monotonic()
            wait_until(lambda: state_of(api, a.id) in FINAL, timeout=120, interval=0.5, what="run A final")
            crashed_after = time.monotonic() - t0
            wait_until(lambda: state_of(api, b.id) in FINAL, timeout=240, interval=0.5, what="run B final")
            b_after = time.monotonic() - t0
        finally:
            w.stop(timeout=10)
            for p in descendants(w.pid or 0):
                os.kill(p, signal.SIGKILL)
    print(
        f"A {state_of(api, a.id)} {crashed_after:.1f}s after SIGKILL; B {state_of(api, b.id)} after {b_after:.1f}s"
    )
    assert state_of(api, a.id) == "CRASHED", w.log_tail(80)
    assert state_of(api, b.id) == "COMPLETED", w.log_tail(80)
