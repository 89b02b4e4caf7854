"""The transport's session reads the environment once per origin (regkeeper/oci/session.py) with
requests' outcome: an environment proxy still carries every call, NO_PROXY still bypasses it,
~/.netrc credentials still go to their host only. Real HTTP over loopback, no mocks."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regkeeper.oci import RegistryClient


class Recorder:
    """A loopback HTTP server answering every GET with ``{"repositories": []}``; records the
    request line's target (absolute when it is used as a proxy) and the Authorization header."""

    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                rec.seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps({"repositories": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.stop()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    for k in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


def test_environment_proxy_carries_every_call(recorder, clean_env):
    clean_env.setenv("HTTP_PROXY", recorder.url)
    c = RegistryClient("r", "http://registry.invalid:5000", retries=0)
    try:
        for _ in range(3):
            assert c.request("GET", "/v2/_catalog").json() == {"repositories": []}
        # read once: a proxy variable changed later is not seen by this client
        clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        c.request("GET", "/v2/_catalog")
    finally:
        c.close()
    assert [p for p, _ in recorder.seen] == ["http://registry.invalid:5000/v2/_catalog"] * 4


def test_no_proxy_still_bypasses_the_proxy(recorder, clean_env):
    clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: used = failure
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    c = RegistryClient("r", recorder.url, retries=0)
    try:
        c.request("GET", "/v2/_catalog")
        c.request("GET", "/v2/_catalog")
    finally:
        c.close()
    assert [p for p, _ in recorder.seen] == ["/v2/_catalog"] * 2


def test_netrc_credentials_go_to_their_host_only(recorder, clean_env, tmp_path):
    other = Recorder()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    mine = RegistryClient("r", recorder.url, retries=0)
    # the same host name on another port: netrc matches the host name, as requests does
    theirs = RegistryClient("o", other.url.replace("127.0.0.1", "localhost"), retries=0)
    try:
        for _ in range(2):
            mine.request("GET", "/v2/_catalog")
            theirs.request("GET", "/v2/_catalog")
    finally:
        mine.close(), theirs.close(), other.stop()
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert [a for _, a in recorder.seen] == [basic, basic]
    assert [a for _, a in other.seen] == [None, None]
