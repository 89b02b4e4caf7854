"""Shared fixtures: real processes on 127.0.0.1 (registry, moto S3, pushgateway) and
loopback helpers (token server, fault proxy, webhook receiver).

Session-scoped: ``registry`` (filesystem storage, plain http), ``moto_server``, ``pushgateway``.
Function-scoped: ``registry_factory``, ``fault_proxy_factory``, ``token_server_factory``,
``webhook_receiver``, ``s3_bucket``, ``unique_repo``. Everything started is stopped at teardown.
"""

import os
import re
import shutil
import uuid

import pytest

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
def unique_repo(request):
    """A repository name unique to this test, e.g. ``t/test-push-roundtrip-1a2b3c``."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t/{name}-{uuid.uuid4().hex[:6]}"
