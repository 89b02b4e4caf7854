"""``regkeeper events serve`` as a user runs it: a real process on loopback, an envelope with
the token stored, one without refused, /metrics served, SIGTERM stops it cleanly (exit 0)."""

import json
import os
import sys
from datetime import UTC, datetime

import requests

from regkeeper.pulls.store import PullStore
from tests.integration.test_cli import rk
from tests.support.procs import ManagedProcess, free_port, wait_http_ready
from tests.support.rkconfig import write_config

DIGEST = "sha256:" + "ab" * 32


def test_events_serve_stores_an_envelope_and_stops_on_sigterm(tmp_path, monkeypatch):
    port = free_port()
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [{"name": "local-registry", "type": "local", "url": f"http://127.0.0.1:{free_port()}", "retries": 1}],
        pulls={"listen": f"127.0.0.1:{port}", "token": "env:RK_TEST_PULL_TOKEN"},
        stateDir=str(tmp_path / "state"),
    )
    env = dict(os.environ, RK_TEST_PULL_TOKEN="tok-123", PYTHONPATH=os.getcwd())
    proc = ManagedProcess(
        [sys.executable, "-m", "app.cli", "events", "serve", "--config", str(cfg)],
        env=env,
        log_path=tmp_path / "events.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ready(
            proc, "events serve", f"{url}/healthz", lambda st: st == 200, timeout=60, stop=proc.stop
        )
        ev = {
            "id": "1",
            "timestamp": "2026-12-01T10:00:00Z",
            "action": "pull",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": "team/app",
                "digest": DIGEST,
                "tag": "v1",
            },
            "request": {"useragent": "containerd/1.7", "addr": "10.0.0.9:1234"},
        }
        body = json.dumps({"events": [ev]})
        ctype = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
        assert (
            requests.post(f"{url}/events/local-registry", data=body, headers=ctype, timeout=10).status_code
            == 401
        )
        auth = dict(ctype, Authorization="Bearer tok-123")
        assert (
            requests.post(f"{url}/events/local-registry", data=body, headers=auth, timeout=10).status_code
            == 200
        )
        m = requests.get(f"{url}/metrics", timeout=10).text
        assert 'regkeeper_pull_events_stored_total{registry="local-registry"} 1.0' in m
        assert 'regkeeper_pull_events_rejected_total{reason="token",registry="local-registry"} 1.0' in m
        assert proc.pid is not None
        os.kill(proc.pid, 15)
        assert proc._proc is not None and proc._proc.wait(timeout=60) == 0
    finally:
        proc.stop()
    assert "tok-123" not in proc.log_text()
    s = PullStore(f"sqlite:///{tmp_path}/state/pulls.sqlite")
    (row,) = s.rows("local-registry")
    s.close()
    assert row["digest"] == DIGEST and row["last_pull"] == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert row["last_user_agent"] == "containerd/1.7"

    # `regkeeper check` reports the store and each registry's collection (the receiver is down now)
    monkeypatch.setenv("RK_TEST_PULL_TOKEN", "tok-123")
    out = rk("check", "--config", str(cfg))
    assert "pulls: store ok (sqlite" in out.stdout, out.stdout + out.stderr
    assert "pulls: local-registry: collecting since 20" in out.stdout
    assert "receiver is not running" not in out.stdout  # its last heartbeat is seconds old


def test_serve_events_starts_the_receiver_beside_the_deployments(tmp_path, monkeypatch):
    """``regkeeper serve --events``: the receiver runs in a thread of the serving process (the
    deployments part is prefect serve, tested in tests/flows/test_deployments.py)."""
    from app.cli import _parser
    from app.events import start_receiver

    assert _parser().parse_args(["serve", "--events"]).events is True
    port = free_port()
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [{"name": "local-registry", "type": "local", "url": "http://127.0.0.1:5000"}],
        pulls={"listen": f"127.0.0.1:{port}"},
        stateDir=str(tmp_path / "state"),
    )
    monkeypatch.setenv("REGKEEPER_CONFIG", str(cfg))
    rx = start_receiver()
    try:
        assert rx.port == port
        r = requests.post(f"{rx.url}/events/local-registry", data=b'{"events": []}', timeout=10)
        assert r.status_code == 200  # loopback without a token is allowed
    finally:
        rx.stop()
