"""The test stack under races a loaded CI machine produces, made to happen on purpose: a port
taken between free_port() and the server's bind (by a process that even answers 200 there)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support import procs
from tests.support import registry as registry_mod
from tests.support.procs import PortInUse, free_port, listens

T = 10  # seconds, every raw HTTP call


class _Squatter:
    """Another process's server on a port: it answers 200 to everything (the worst case: a
    readiness check that only looks at the status would take it for the registry)."""

    def __init__(self, port: int = 0) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def squatter():
    s = _Squatter()
    yield s
    s.stop()


def test_registry_moves_off_a_port_taken_meanwhile(tmp_path, monkeypatch, squatter):
    chosen = iter([squatter.port])
    real = procs.free_port
    monkeypatch.setattr(registry_mod, "free_port", lambda: next(chosen, None) or real())
    srv = registry_mod.RegistryServer(tmp_path / "reg")
    try:
        assert srv.port != squatter.port  # the squatter's 200 was not taken for the registry
        assert listens(srv.pid, srv.port) and not listens(srv.pid, squatter.port)
        r = requests.get(f"{srv.url}/v2/", timeout=T)
        assert r.status_code == 200 and r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert "address already in use" in srv.log_text()  # the first start did fail on the port
    finally:
        srv.stop()


def test_registry_restart_on_a_taken_port_names_it(tmp_path):
    srv = registry_mod.RegistryServer(tmp_path / "reg")
    port = srv.port
    srv.stop()
    blocker = _Squatter(port)
    try:
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}.*address already in use"):
            srv.start()  # a restart keeps its URL: no other port to move to
        assert srv.pid is None  # the failed process was stopped, nothing left running
    finally:
        blocker.stop()
        srv.stop()
    srv.start()  # the port free again: the same URL serves
    try:
        assert srv.port == port and requests.get(f"{srv.url}/v2/", timeout=T).status_code == 200
    finally:
        srv.stop()


def test_retry_taken_port_gives_up_after_its_attempts():
    calls = []

    def attempt():
        calls.append("start")
        raise PortInUse("port 1 taken")

    with pytest.raises(PortInUse, match="port 1 taken"):
        procs.retry_taken_port(attempt, lambda: calls.append("repick"), attempts=3)
    assert calls == ["start", "repick", "start", "repick", "start"]


def test_demo_registry_moves_off_a_port_taken_meanwhile(tmp_path, monkeypatch, squatter):
    """The demo (app/demo) starts its registries the same way: a squatter's 200 on the chosen
    port is not its registry; it starts again on a fresh port before anyone has the URL."""
    import app.demo.registry as demo

    chosen = iter([squatter.port])
    real = demo.free_port
    monkeypatch.setattr(demo, "free_port", lambda: next(chosen, None) or real())
    reg = demo.DemoRegistry(tmp_path / "demo", "demo-registry")
    assert reg.port == squatter.port
    try:
        reg.start()
        assert reg.port != squatter.port and listens(reg.pid, reg.port)
        r = requests.get(f"{reg.url}/v2/", timeout=T)
        assert r.status_code == 200 and r.headers[demo.IDENT_HEADER] == reg.ident
    finally:
        reg.stop()
    assert not reg.pid_path.exists()


def test_report_docs_orders_runs_of_one_second_by_when_they_started(tmp_path):
    """Runs in one second: a second run of the same registry is ``<stamp>.02-<slug>.*`` and sorts
    after the first by name, but across registries names are not the run order; report_docs
    gives the order they ran (the product's index goes by ``started`` too)."""
    from datetime import UTC, datetime

    from regkeeper.report import Report
    from tests.support.reports import report_docs

    t = datetime(2026, 12, 2, 23, 59, 59, 100_000, tzinfo=UTC)
    first = Report("gc", "reg", started=t, status="dry-run").write(tmp_path)
    second = Report("gc", "reg", started=t.replace(microsecond=900_000), status="ok").write(tmp_path)
    other = Report("gc", "zeta", started=t.replace(microsecond=950_000), status="failed").write(tmp_path)
    by_name = sorted((tmp_path / "gc").glob("*.json"))
    assert [str(p) for p in by_name] == [first["json"], other["json"], second["json"]]
    docs = report_docs(tmp_path / "gc")
    assert [d["status"] for d in docs] == ["dry-run", "ok", "failed"]
    assert str(docs[1]["_path"]) == second["json"] and docs[1]["files"]["csv"] == second["csv"]


def test_a_free_port_is_held_until_its_server_binds_it():
    """free_port() keeps the port bound (not listening): another process's plain bind, or its
    own free_port(), cannot take it before the server binds; a connect is refused meanwhile;
    a server that sets SO_REUSEADDR (all of the stack's do) binds and serves on it."""
    import socket

    port = free_port()
    with socket.socket() as other:
        with pytest.raises(OSError, match="Address already in use"):
            other.bind(("127.0.0.1", port))
    assert port not in {free_port() for _ in range(100)}  # (fewer than HELD_PORTS)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    srv = _Squatter(port)  # socketserver: SO_REUSEADDR
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=T).status_code == 200
    finally:
        srv.stop()
