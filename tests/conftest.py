"""Shared fixtures: real processes on 127.0.0.1 (registry, moto S3, pushgateway) and
loopback helpers (token server, fault proxy, webhook receiver).

Session-scoped: ``registry`` (filesystem storage, plain http), ``moto_server``, ``pushgateway``,
``prefect_harness`` (the session's one Prefect server, started when a test first needs it) and
``prefect_api`` (its URL for a CLI subprocess: ``rk(..., prefect=prefect_api)``).
Function-scoped: ``registry_factory``, ``fault_proxy_factory``, ``token_server_factory``,
``webhook_receiver``, ``s3_bucket``, ``unique_repo``. Everything started is stopped at teardown.

The registry matrix and the Go-built tools (scripts/install-go-tools): ``registry_matrix``
(parametrised: dist28-fs, dist28-s3, dist3-fs, referrers-api), ``dist3_factory``,
``referrers_registry_factory``, ``oras``, ``cosign``, ``regctl``. A missing Go binary skips the
test with the command to run, or fails it when REGKEEPER_REQUIRE_GO_TOOLS=1 (as in CI).
"""

import os
import re
import shutil
import uuid

import pytest

from tests.support.matrix import MATRIX

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# The support modules (requests, boto3, cryptography...) are imported inside the fixtures so
# collecting the unit tests stays cheap.
REGISTRY_BIN = "/usr/bin/docker-registry"
PUSHGATEWAY_BIN = "/usr/bin/prometheus-pushgateway"


def _require(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: install the Debian package '{package}' (these tests use the real binary)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """One distribution 2.8 registry for the session (filesystem storage, http, no auth).
    Shared: use unique repository names per test."""
    _require(REGISTRY_BIN, "docker-registry")
    from tests.support.registry import RegistryServer

    srv = RegistryServer(tmp_path_factory.mktemp("registry"))
    yield srv
    srv.stop()


@pytest.fixture
def registry_factory(tmp_path):
    """``make(**RegistryServer options) -> RegistryServer``; each gets its own dir and port."""
    _require(REGISTRY_BIN, "docker-registry")
    from tests.support.registry import RegistryServer

    started: list[RegistryServer] = []

    def make(**kwargs) -> RegistryServer:
        if kwargs.get("htpasswd") and not shutil.which("htpasswd"):
            pytest.fail("htpasswd is missing: install the Debian package 'apache2-utils'", pytrace=False)
        srv = RegistryServer(tmp_path / f"registry{len(started)}", **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """One moto_server (S3 API) for the session; use unique bucket names (see ``s3_bucket``)."""
    from tests.support.moto import MotoServer

    srv = MotoServer(log_dir=str(tmp_path_factory.mktemp("moto")))
    yield srv
    srv.stop()


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh, uniquely named bucket on the session moto server."""
    return moto_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    """One in-memory Pushgateway for the session; call ``.wipe()`` for a clean slate."""
    _require(PUSHGATEWAY_BIN, "prometheus-pushgateway")
    from tests.support.pushgateway import Pushgateway

    gw = Pushgateway(log_dir=tmp_path_factory.mktemp("pushgateway"))
    yield gw
    gw.stop()


@pytest.fixture
def token_server_factory(tmp_path):
    """``make(**TokenServer options) -> TokenServer``; pass ``.auth_config()`` to ``registry_factory(token=...)``."""
    from tests.support.tokenserver import TokenServer

    started: list[TokenServer] = []

    def make(**kwargs) -> TokenServer:
        ts = TokenServer(tmp_path / f"tokenserver{len(started)}", **kwargs)
        started.append(ts)
        return ts

    yield make
    for ts in started:
        ts.stop()


@pytest.fixture
def fault_proxy_factory():
    """``make(upstream_url, **FaultProxy options) -> FaultProxy``."""
    from tests.support.faultproxy import FaultProxy

    started: list[FaultProxy] = []

    def make(upstream_url: str, **kwargs) -> FaultProxy:
        proxy = FaultProxy(upstream_url, **kwargs)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def webhook_receiver():
    """A WebhookReceiver recording every POST (``.received``); ``.status`` sets the answer."""
    from tests.support.webhook import WebhookReceiver

    rcv = WebhookReceiver()
    yield rcv
    rcv.stop()


@pytest.fixture
def dead_port():
    """A loopback port nothing listens on for the whole test (held bound, not listening: a
    connect is refused, and no other process can take the port meanwhile)."""
    from tests.support.procs import dead_port as hold

    with hold() as port:
        yield port


@pytest.fixture
def unique_repo(request):
    """A repository name unique to this test, e.g. ``t/test-push-roundtrip-1a2b3c``."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t/{name}-{uuid.uuid4().hex[:6]}"


# -- the registry matrix and the Go-built tools -------------------------------------------


def _require_go_tool(name: str) -> None:
    from tests.support.gotools import go_tool_path, go_tools_required, missing_go_tool_message

    if go_tool_path(name) is None:
        if go_tools_required():
            pytest.fail(missing_go_tool_message(name), pytrace=False)
        pytest.skip(missing_go_tool_message(name))


@pytest.fixture
def dist3_factory(tmp_path):
    """``make(**RegistryServer options) -> Distribution3Server`` (distribution v3, filesystem)."""
    _require_go_tool("registry")
    from tests.support.dist3 import Distribution3Server

    started: list[Distribution3Server] = []

    def make(**kwargs) -> Distribution3Server:
        srv = Distribution3Server(tmp_path / f"dist3-{len(started)}", **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def referrers_registry_factory(tmp_path):
    """``make(**ReferrersRegistryServer options)``: the OCI 1.1 referrers-API test registry."""
    _require_go_tool("referrers-registry")
    from tests.support.referrers import ReferrersRegistryServer

    started: list[ReferrersRegistryServer] = []

    def make(**kwargs) -> ReferrersRegistryServer:
        srv = ReferrersRegistryServer(tmp_path / f"referrers-{len(started)}", **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(params=MATRIX)
def registry_matrix(request, tmp_path):
    """A fresh registry of each matrix kind (see tests/support/matrix.py): ``.url``, ``.host``,
    ``.name``, ``.capabilities``, ``.start()``/``.stop()`` and the server's own methods."""
    from tests.support.matrix import GO_BINARY, MatrixRegistry

    name = request.param
    if name in GO_BINARY:
        _require_go_tool(GO_BINARY[name])
    else:
        _require(REGISTRY_BIN, "docker-registry")
    root = tmp_path / name

    def make():
        if name == "dist28-fs":
            from tests.support.registry import RegistryServer

            return RegistryServer(root)
        if name == "dist28-s3":
            from tests.support.registry import RegistryServer

            moto = request.getfixturevalue("moto_server")
            bucket = request.getfixturevalue("s3_bucket")
            return RegistryServer(root, storage="s3", s3=moto.s3_config(bucket))
        if name == "dist3-fs":
            from tests.support.dist3 import Distribution3Server

            return Distribution3Server(root)
        from tests.support.referrers import ReferrersRegistryServer

        return ReferrersRegistryServer(root)

    reg = MatrixRegistry(name, make)
    yield reg
    reg.stop()


def _go_tool_fixture(name: str, tmp_path):
    _require_go_tool(name)
    from tests.support import ocitools

    cls = {"oras": ocitools.Oras, "cosign": ocitools.Cosign, "regctl": ocitools.Regctl}[name]
    tool = cls(tmp_path / f"{name}-work")
    yield tool
    tool.close()


@pytest.fixture
def oras(tmp_path):
    """``Oras`` (tests/support/ocitools.py) with its own HOME, offline."""
    yield from _go_tool_fixture("oras", tmp_path)


@pytest.fixture
def cosign(tmp_path):
    """``Cosign`` with a fresh key pair on first sign(), no Rekor/Fulcio/TUF."""
    yield from _go_tool_fixture("cosign", tmp_path)


@pytest.fixture
def regctl(tmp_path):
    """``Regctl`` with its own config file; call ``.plain_http(host)`` for a loopback registry."""
    yield from _go_tool_fixture("regctl", tmp_path)


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL 15 on 127.0.0.1 (the pull store's production option)."""
    from tests.support.postgres import BIN, PostgresServer, available

    if not available():
        pytest.fail(f"{BIN}/postgres is missing: install the Debian package 'postgresql'", pytrace=False)
    srv = PostgresServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def pull_store_url(request, tmp_path):
    """A fresh pull store: SQLite under tmp_path, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pulls.sqlite"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture(scope="session")
def prefect_harness():
    """The session's one Prefect server: Prefect's test harness (a real uvicorn server on
    127.0.0.1, its SQLite database in a temporary directory, stopped by its PID at the end),
    started when a test first needs it: every flow test (tests/flows, autouse there) and every
    CLI subprocess that runs a flow (``prefect_api``). 8-15 s, paid once."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def prefect_api(prefect_harness, tmp_path_factory) -> dict[str, str]:
    """What a CLI subprocess needs to run its flows on the session's server, not on a temporary
    server of its own (~12-20 s a command): ``PREFECT_API_URL`` and a ``PREFECT_HOME`` of its own
    (nothing read from or written to ~/.prefect). Pass it as ``rk(..., prefect=prefect_api)``."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url and url.startswith("http://127.0.0.1:"), url
    return {"PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home-cli"))}
