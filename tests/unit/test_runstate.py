"""Durable run state (regkeeper.runstate): leases taken atomically, renewed, released, and taken
over only from owners that are gone (dead pid, zombie, reused pid, expired); read-only window
records recovered by the next run unless a live owner holds them."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from regkeeper.runstate import (
    Lease,
    Owner,
    RunState,
    Window,
    judge,
    lease_name,
    lease_path,
    list_windows,
    read_holder,
    read_window,
    recover_windows,
    save_window,
)
from regkeeper.runstate.owner import pid_start
from regkeeper.util import utcnow
from tests.support.procs import wait_until


def parse(doc: dict):
    import yaml

    from regkeeper.config import parse_config

    return parse_config(yaml.safe_dump(doc))


def me(run="run-live", job="test") -> Owner:
    return Owner.current(job, run)


def dead_owner(run="run-dead") -> Owner:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = pid_start(p.pid)
    p.wait()
    return replace(Owner.current("gc", run), pid=p.pid, pid_start=start)


def hold(root: Path, name: str, owner: Owner, ttl: float = 60) -> Lease:
    lease = Lease(root, name, owner, ttl)
    assert lease.acquire().ok
    return lease


# ---------------------------------------------------------------- leases


def test_lease_taken_once_released_then_taken_again(tmp_path):
    a = hold(tmp_path, "replicate-rule-all", me("run-a"))
    rec = json.loads(lease_path(tmp_path, "replicate-rule-all").read_text())
    assert rec["owner"]["run"] == "run-a" and rec["owner"]["pid"] == os.getpid() and rec["expires"]
    got = Lease(tmp_path, "replicate-rule-all", me("run-b"), 60).acquire()
    assert not got.ok and got.holder.owner.run == "run-a"  # a live holder keeps it
    a.release()
    assert not lease_path(tmp_path, "replicate-rule-all").exists()
    assert Lease(tmp_path, "replicate-rule-all", me("run-b"), 60).acquire().ok


def test_dead_pid_taken_over_and_said_whose(tmp_path):
    dead = dead_owner()
    hold(tmp_path, "replicate-rule-all", dead)  # never released: killed
    got = Lease(tmp_path, "replicate-rule-all", me("run-next"), 60).acquire()
    assert got.ok and got.took_over.owner.run == "run-dead"
    assert f"pid {dead.pid} is not running" in got.reason
    note = got.takeover_note("lease replicate-rule-all")
    assert "took over lease replicate-rule-all from run run-dead" in note and f"pid {dead.pid}" in note
    assert read_holder(tmp_path, "replicate-rule-all").owner.run == "run-next"


def test_zombie_and_reused_pid_are_gone(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        o = replace(Owner.current("replicate", "run-zombie"), pid=p.pid, pid_start=pid_start(p.pid))
        assert o.gone_reason() is None  # alive: not gone
        p.kill()
        wait_until(lambda: o.gone_reason(), what="the killed child to be a zombie")
        assert "zombie" in o.gone_reason()  # killed, not reaped yet
    finally:
        p.wait()
    reused = replace(Owner.current("gc", "run-old"), pid_start="1")  # our pid, another start time
    assert "another process now" in reused.gone_reason()


def test_other_host_busy_until_expired(tmp_path):
    far = replace(me("run-far"), host="another-host")
    hold(tmp_path, "reclaim-r", far, ttl=60)
    got = Lease(tmp_path, "reclaim-r", me("run-here"), 60).acquire()
    assert not got.ok and got.holder.owner.host == "another-host"  # no pid check across hosts
    rec = json.loads(lease_path(tmp_path, "reclaim-r").read_text())
    rec["expires"] = (utcnow() - timedelta(seconds=1)).isoformat()  # no heartbeat for a ttl
    lease_path(tmp_path, "reclaim-r").write_text(json.dumps(rec))
    got = Lease(tmp_path, "reclaim-r", me("run-here"), 60).acquire()
    assert got.ok and "expired" in got.reason


def test_heartbeat_renews_and_release_removes(tmp_path):
    far = replace(me("run-far"), host="another-host")  # only expiry protects it
    lease = hold(tmp_path, "reclaim-r", far, ttl=2)
    first = read_holder(tmp_path, "reclaim-r").expires
    with lease.held():
        wait_until(lambda: read_holder(tmp_path, "reclaim-r").expires > first, timeout=60, what="a heartbeat")
        assert not Lease(tmp_path, "reclaim-r", me("other"), 2).acquire().ok
    assert read_holder(tmp_path, "reclaim-r") is None


def test_lost_lease_is_not_renewed_nor_removed(tmp_path):
    lease = hold(tmp_path, "reclaim-r", me("run-a"))
    p = lease_path(tmp_path, "reclaim-r")
    rec = json.loads(p.read_text())
    p.write_text(json.dumps({**rec, "token": "someone-else"}))  # taken over meanwhile
    assert lease.renew() is False and lease.lost
    lease.release()
    assert json.loads(p.read_text())["token"] == "someone-else"


def test_takeover_race_puts_back_a_lease_taken_meanwhile(tmp_path):
    hold(tmp_path, "r", dead_owner())
    stale = read_holder(tmp_path, "r")
    winner = Lease(tmp_path, "r", me("winner"), 60)
    assert winner.acquire().ok  # took it over first
    loser = Lease(tmp_path, "r", me("loser"), 60)
    assert loser._move_aside(stale) is False  # judged the old record
    assert read_holder(tmp_path, "r").owner.run == "winner"  # put back, intact
    assert not [p for p in (tmp_path / "leases").iterdir() if ".stale-" in p.name]


def test_unreadable_record_waits_a_ttl(tmp_path):
    p = lease_path(tmp_path, "r")
    p.parent.mkdir(parents=True)
    p.write_text("{torn")
    assert not Lease(tmp_path, "r", me(), 60).acquire().ok
    old = time.time() - 120
    os.utime(p, (old, old))
    got = Lease(tmp_path, "r", me(), 60).acquire()
    assert got.ok and "unreadable" in got.reason


# ---------------------------------------------------------------- read-only windows


def window(root: Path, registry: str, owner: Owner, argv: list[str], *, hold_lease: bool) -> Window:
    lease = Lease(root, lease_name(registry), owner, 60)
    assert lease.acquire().ok
    w = Window(
        registry=registry,
        owner=owner,
        started=owner.started,
        read_write=argv,
        timeout=30,
        lease=lease.name,
        lease_token=lease.token,
    )
    save_window(root, w)
    if not hold_lease:
        lease.release()
    return w


def touch_cmd(path: Path) -> list[str]:
    return [sys.executable, "-c", f"open({str(path)!r}, 'a').write('rw\\n')"]


def test_window_of_a_dead_run_recovered_once(tmp_path):
    dead = dead_owner("run-killed")
    window(tmp_path, "local-registry", dead, touch_cmd(tmp_path / "rw"), hold_lease=True)
    rs = RunState(tmp_path, me("run-next", "capacity"), 60)
    (r,) = recover_windows(rs)
    assert r.outcome == "recovered" and (tmp_path / "rw").read_text() == "rw\n"
    assert r.note().startswith(
        f"recovered: registry local-registry was left read-only by run "
        f"run-killed (pid {dead.pid}, started {dead.started}); readWrite run"
    )
    assert read_window(tmp_path, "local-registry") is None and list_windows(tmp_path) == []
    assert read_holder(tmp_path, lease_name("local-registry")) is None
    assert rs.recovered_count("local-registry") == 1
    assert recover_windows(rs) == []  # nothing left to do


def test_live_window_left_alone(tmp_path):
    owner = me("run-gc-live", "gc")
    window(tmp_path, "r", owner, touch_cmd(tmp_path / "rw"), hold_lease=True)
    (r,) = recover_windows(RunState(tmp_path, me("run-next"), 60))
    assert r.outcome == "live" and "left alone" in r.note() and "run-gc-live" in r.note()
    assert not (tmp_path / "rw").exists() and read_window(tmp_path, "r") is not None


def test_window_with_running_gc_child_left_alone(tmp_path):
    owner = dead_owner("run-killed")
    w = window(tmp_path, "r", owner, touch_cmd(tmp_path / "rw"), hold_lease=False)
    gc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        w.step, w.step_pid, w.step_pid_start = "garbageCollect", gc.pid, pid_start(gc.pid)
        save_window(tmp_path, w)
        st = judge(tmp_path, read_window(tmp_path, "r"))
        assert st.live and f"garbageCollect step (pid {gc.pid}) is still running" in st.why
        assert recover_windows(RunState(tmp_path, me(), 60))[0].outcome == "live"
        assert not (tmp_path / "rw").exists()
    finally:
        gc.kill()
        gc.wait()
    assert recover_windows(RunState(tmp_path, me(), 60))[0].outcome == "recovered"


def test_failed_read_write_keeps_the_record_until_it_works(tmp_path):
    dead = dead_owner("run-killed")
    window(tmp_path, "r", dead, [sys.executable, "-c", "raise SystemExit(3)"], hold_lease=True)
    rs = RunState(tmp_path, me(), 60)
    (r,) = recover_windows(rs)
    assert r.outcome == "failed" and "reclaim.readWrite exited 3" in r.note()
    assert "still read-only" in r.note() and read_window(tmp_path, "r") is not None
    w = read_window(tmp_path, "r")
    w.read_write = touch_cmd(tmp_path / "rw")
    save_window(tmp_path, w)
    assert recover_windows(rs)[0].outcome == "recovered" and read_window(tmp_path, "r") is None


def test_configured_read_write_preferred_over_the_recorded_one(tmp_path):
    cfg = parse(
        {
            "mirrorRepositories": [
                {
                    "name": "r",
                    "url": "http://127.0.0.1:1",
                    "reclaim": {
                        "mode": "command",
                        "readOnly": ["true"],
                        "garbageCollect": ["true"],
                        "readWrite": touch_cmd(tmp_path / "fixed"),
                    },
                }
            ]
        }
    )
    window(tmp_path, "r", dead_owner(), [sys.executable, "-c", "raise SystemExit(1)"], hold_lease=False)
    (r,) = recover_windows(RunState(tmp_path, me(), 60), config=cfg)
    assert r.outcome == "recovered" and (tmp_path / "fixed").exists()


def test_state_path_defaults(tmp_path, monkeypatch):
    parse_config = parse
    base = {"mirrorRepositories": [{"name": "r", "url": "http://127.0.0.1:1"}]}
    assert parse_config({**base, "stateDir": str(tmp_path / "s")}).state_path() == tmp_path / "s"
    cached = parse_config({**base, "cacheDir": str(tmp_path / "cache")})
    assert cached.state_path() == tmp_path / "cache-state"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse_config(base).state_path() == tmp_path / "xdg" / "regkeeper"
    with pytest.raises(Exception, match="leaseTtl"):
        parse_config({**base, "leaseTtl": "1s"})
