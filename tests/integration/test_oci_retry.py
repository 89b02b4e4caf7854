"""The OCI client's one retry decision against a real registry behind the fault proxy: resets
and truncation while reading a body, garbage JSON, 429/503 are retried (counted and logged);
401/403/404 are sent once; a fault that outlasts the budget ends in a RegistryError that names
the registry, the call and the attempts."""

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests

from regkeeper.errors import AuthError, NotFoundError, RegistryError, UnsupportedManifestError
from regkeeper.oci import RegistryClient
from tests.support import images

REPO = "retry/app"
BODY_FAULTS = ["reset_body", "truncate", "garbage"]


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def pushed(registry):
    return images.push_image(registry.url, REPO, "v1", media="oci")


@pytest.fixture
def proxy(registry, pushed, fault_proxy_factory):
    return fault_proxy_factory(registry.url)


def client(url: str, name: str = "r1", **kw) -> RegistryClient:
    kw.setdefault("retries", 2)  # 3 attempts
    kw.setdefault("backoff", 0.01)
    return RegistryClient(name, url, **kw)


def retry_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "regkeeper.retry"]


def sent(proxy, method: str, rx: str) -> int:
    return len([r for r in proxy.requests if r.method == method and re.search(rx, r.path)])


# every read the client makes: (path regex of the faulted GET, the call, check of its result)
READS = {
    "catalog": (r"^/v2/_catalog", lambda c, img: c.catalog(), lambda got, img: REPO in got),
    "tags": (r"/tags/list", lambda c, img: c.list_tags(REPO), lambda got, img: got == ["v1"]),
    "manifest-by-tag": (
        r"/manifests/v1$",
        lambda c, img: c.get_manifest(REPO, "v1"),
        lambda got, img: got.digest == img.digest and got.raw == img.manifest_bytes,
    ),
    "manifest-by-digest": (
        r"/manifests/sha256:",
        lambda c, img: c.get_manifest(REPO, img.digest),
        lambda got, img: got.digest == img.digest,
    ),
    "get_blob": (
        r"/blobs/sha256:",
        lambda c, img: c.get_blob(REPO, img.layer_digests[0]),
        lambda got, img: sha(got) == img.layer_digests[0],
    ),
    "get_config": (
        r"/blobs/sha256:",
        lambda c, img: c.get_config(REPO, img.config_digest),
        lambda got, img: isinstance(got, dict) and "created" in got and "rootfs" in got,
    ),
}


@pytest.mark.parametrize("kind", BODY_FAULTS)
@pytest.mark.parametrize("read", list(READS))
def test_broken_body_is_retried_counted_and_logged(proxy, pushed, caplog, kind, read):
    rx, call, check = READS[read]
    c = client(proxy.url)
    proxy.add_fault(kind, method="GET", path_regex=rx, times=1)
    with caplog.at_level(logging.WARNING, logger="regkeeper.retry"):
        got = call(c, pushed)
    assert check(got, pushed)
    assert proxy.pending_faults() == 0
    assert [r.fault for r in proxy.requests if re.search(rx, r.path)] == [kind, None]
    assert c.stats["retries"] == 1
    (line,) = retry_lines(caplog)
    path = next(r.path for r in proxy.requests if re.search(rx, r.path)).split("?")[0]
    assert line.startswith(f"registry 'r1': GET {path}: ") and "attempt 1/3 failed" in line, line
    assert "?" not in line  # no query string in the log


@pytest.mark.parametrize("kind", BODY_FAULTS)
def test_token_endpoint_faults_are_retried(
    registry_factory, token_server_factory, fault_proxy_factory, caplog, kind
):
    ts = token_server_factory(users={"bob": "t0ken-Pass!"})
    tproxy = fault_proxy_factory(ts.url)
    reg = registry_factory(token=dataclasses.replace(ts.auth_config(), realm=tproxy.url + "/token"))
    images.push_image(reg.url, "tok/app", "v1", token_server=ts, auth=("bob", "t0ken-Pass!"))
    tproxy.clear()
    c = client(reg.url, "tok", username="bob", password="t0ken-Pass!")
    tproxy.add_fault(kind, method="GET", path_regex=r"^/token", times=1)
    with caplog.at_level(logging.DEBUG):
        assert c.list_tags("tok/app") == ["v1"]
    assert tproxy.pending_faults() == 0 and [r.fault for r in tproxy.requests] == [kind, None]
    assert c.stats["retries"] == 1 and sent(tproxy, "GET", r"^/token") == 2
    (line,) = retry_lines(caplog)
    assert line.startswith("registry 'tok': GET /token: ") and "attempt 1/3" in line
    assert "t0ken-Pass!" not in caplog.text and "scope=" not in line
    for r in ts.requests:
        assert not r.token or r.token not in caplog.text
    # a token service that keeps failing: the error names it and the attempts, and is not
    # retried once more by the registry call around it
    tproxy.add_fault(kind, method="GET", path_regex=r"^/token", times=10)
    fresh = client(reg.url, "tok", username="bob", password="t0ken-Pass!")
    with pytest.raises(RegistryError) as ei:
        fresh.list_tags("tok/app")
    e = ei.value
    assert e.transient and e.attempts == 3 and e.method == "GET" and e.path == "/token"
    assert "registry 'tok'" in str(e) and "GET /token" in str(e) and "after 3 attempts" in str(e)
    assert sent(tproxy, "GET", r"^/token") == 2 + 3


def test_429_with_retry_after_and_503_still_retried(proxy, pushed, caplog):
    c = client(proxy.url)
    proxy.add_fault("429", retry_after=1, method="GET", path_regex=r"/tags/list", times=1)
    proxy.add_fault("status", status=503, method="GET", path_regex=r"/manifests/v1$", times=1)
    proxy.add_fault("status", status=502, method="HEAD", path_regex=r"/manifests/v1$", times=1)
    proxy.add_fault("status", status=504, method="GET", path_regex=r"/blobs/", times=1)
    with caplog.at_level(logging.WARNING, logger="regkeeper.retry"):
        t0 = time.monotonic()
        assert c.list_tags(REPO) == ["v1"]
        assert time.monotonic() - t0 >= 0.9  # Retry-After: 1 was honoured
        assert c.get_manifest(REPO, "v1").digest == pushed.digest
        assert c.head_manifest(REPO, "v1").digest == pushed.digest  # the fast HEAD path
        assert sha(c.get_blob(REPO, pushed.layer_digests[0])) == pushed.layer_digests[0]
        # Retry-After as an HTTP-date: whole seconds (the format drops the fraction), 3 s past
        # the next one, so a slow path to the 429 (a loaded machine) still leaves a wait to see
        when = format_datetime(datetime.fromtimestamp(math.ceil(time.time()) + 3, UTC), usegmt=True)
        proxy.add_fault("429", retry_after=when, method="GET", path_regex=r"/tags/list", times=1)
        t0 = time.monotonic()
        assert c.list_tags(REPO) == ["v1"]
        assert time.monotonic() - t0 >= 0.5
    assert proxy.pending_faults() == 0 and c.stats["retries"] == 5
    lines = retry_lines(caplog)
    assert sum("HTTP 429 (rate limited)" in x for x in lines) == 2
    assert any("HTTP 503" in x for x in lines) and any("HTTP 502" in x and "HEAD" in x for x in lines)


@pytest.mark.parametrize("status, error", [(401, AuthError), (403, AuthError), (404, NotFoundError)])
def test_permanent_statuses_are_sent_once(proxy, pushed, status, error):
    c = client(proxy.url)
    calls = [
        ("GET", r"^/v2/_catalog", lambda: c.catalog()),
        ("GET", r"/tags/list", lambda: c.list_tags(REPO)),
        ("GET", r"/manifests/v1$", lambda: c.get_manifest(REPO, "v1")),
        ("HEAD", r"/manifests/v1$", lambda: c.head_manifest(REPO, "v1")),
        ("GET", r"/blobs/sha256:", lambda: c.get_blob(REPO, pushed.config_digest)),
        ("DELETE", r"/manifests/sha256:", lambda: c.delete_manifest(REPO, pushed.digest)),
    ]
    for method, rx, call in calls:
        proxy.clear()
        proxy.add_fault("status", status=status, method=method, path_regex=rx, times=5)
        if status == 404 and method in ("HEAD", "DELETE"):
            assert call() in (None, False)  # 404 means absent / already gone
        else:
            with pytest.raises(error) as ei:
                call()
            assert ei.value.status == status and not ei.value.transient and ei.value.attempts is None
            assert ei.value.method == method and f"{method} /v2/" in str(ei.value)
        assert sent(proxy, method, rx) == 1, (method, rx)
        proxy.clear_faults()
    assert c.stats["retries"] == 0


@pytest.mark.parametrize("kind", BODY_FAULTS + ["reset", "503"])
def test_fault_outlasting_the_budget_names_registry_call_and_attempts(proxy, pushed, caplog, kind):
    c = client(proxy.url)
    if kind == "503":
        proxy.add_fault("status", status=503, method="GET", path_regex=r"/tags/list", times=10)
    else:
        proxy.add_fault(kind, method="GET", path_regex=r"/tags/list", times=10)
    with caplog.at_level(logging.WARNING, logger="regkeeper.retry"):
        with pytest.raises(RegistryError) as ei:
            c.list_tags(REPO)
    e = ei.value
    text = str(e)
    assert e.transient is True and e.attempts == 3
    assert "registry 'r1'" in text and f"GET /v2/{REPO}/tags/list" in text and "after 3 attempts" in text
    assert e.registry == "r1" and e.repository == REPO and e.method == "GET"
    assert e.path == f"/v2/{REPO}/tags/list"
    if kind == "garbage":
        assert "response is not valid JSON after 3 attempts" in text
    if kind == "503":
        assert e.status == 503
    assert sent(proxy, "GET", r"/tags/list") == 3 and c.stats["retries"] == 2
    assert len(retry_lines(caplog)) == 2


def test_catalog_garbage_ends_in_a_named_error(proxy):
    c = client(proxy.url)
    proxy.add_fault("garbage", method="GET", path_regex=r"^/v2/_catalog", times=10)
    with pytest.raises(RegistryError) as ei:
        c.catalog()
    assert str(ei.value).startswith(
        "registry 'r1': GET /v2/_catalog: response is not valid JSON after 3 attempts, retries exhausted ("
    )
    assert type(ei.value) is RegistryError and ei.value.__cause__ is None


def test_streamed_blob_retried_until_headers_then_a_break_is_transient(proxy, fault_proxy_factory):
    data = os.urandom(3 * 1024 * 1024)
    c = client(proxy.url)
    c.upload_blob(REPO, sha(data), data)
    proxy.add_fault("status", status=503, method="GET", path_regex=r"/blobs/", times=1)
    with c.stream_blob(REPO, sha(data)) as (it, size):
        assert size == len(data) and b"".join(it) == data
    assert c.stats["retries"] == 1
    for kind in ("reset_body", "truncate"):
        proxy.add_fault(kind, method="GET", path_regex=r"/blobs/", times=1, part=0.6)
        with pytest.raises(RegistryError) as ei:
            with c.stream_blob(REPO, sha(data)) as (it, _):
                for _ in it:
                    pass
        e = ei.value
        assert e.transient is True and e.attempts is None and e.method == "GET"
        assert "connection broke while streaming the blob" in str(e) and "must restart" in str(e)
        assert f"GET /v2/{REPO}/blobs/{sha(data)}" in str(e)
    # the one blob transfer restarts it: a fresh stream reads the whole blob
    with c.stream_blob(REPO, sha(data)) as (it, _):
        assert b"".join(it) == data


def test_uploads_patch_is_not_retried_post_and_put_are(proxy):
    c = client(proxy.url)
    data = os.urandom(200_000)
    chunks = lambda: iter([data[i : i + 50_000] for i in range(0, len(data), 50_000)])  # noqa: E731
    proxy.add_fault("reset", method="PATCH", times=1)
    with pytest.raises(RegistryError) as ei:
        c.upload_blob("retry/up", sha(data), chunks, size=len(data), chunk_size=64 * 1024)
    assert ei.value.method == "PATCH" and ei.value.attempts is None
    assert sent(proxy, "PATCH", r"/blobs/uploads/") == 1 and c.stats["retries"] == 0
    proxy.clear()
    proxy.add_fault("status", status=503, method="POST", path_regex=r"/blobs/uploads/", times=1)
    proxy.add_fault("reset", method="PUT", path_regex=r"/blobs/uploads/", times=1)
    c.upload_blob("retry/up", sha(data), chunks, size=len(data), chunk_size=64 * 1024)
    assert c.head_blob("retry/up", sha(data)) == len(data)
    assert proxy.pending_faults() == 0 and c.stats["retries"] == 2
    small = b"monolithic upload"
    proxy.add_fault("reset", method="PUT", path_regex=r"/blobs/uploads/", times=1)
    c.upload_blob("retry/up", sha(small), small)
    assert c.head_blob("retry/up", sha(small)) == len(small) and c.stats["retries"] == 3


def test_bodies_of_the_wrong_shape_are_named_errors_not_library_exceptions(
    registry_factory, token_server_factory, fault_proxy_factory, proxy
):
    c = client(proxy.url)
    for rx, body, call, error, words in [
        (r"^/v2/_catalog", b"[]", lambda: c.catalog(), RegistryError, "a JSON list, expected an object"),
        (
            r"/tags/list",
            b'{"name": "x", "tags": "v1"}',
            lambda: c.list_tags(REPO),
            RegistryError,
            "'tags' is not a list of names",
        ),
        (
            r"/manifests/v1$",
            b"[1, 2]",
            lambda: c.get_manifest(REPO, "v1"),
            UnsupportedManifestError,
            "not a JSON object",
        ),
        (
            r"/manifests/v1$",
            json.dumps({"schemaVersion": 2, "manifests": [{"size": 1}]}).encode(),
            lambda: c.get_manifest(REPO, "v1"),
            UnsupportedManifestError,
            "malformed (KeyError",
        ),
    ]:
        proxy.clear()
        proxy.add_fault("status", status=200, body=body, method="GET", path_regex=rx, times=1)
        with pytest.raises(error) as ei:
            call()
        assert words in str(ei.value) and "registry 'r1'" in str(ei.value), str(ei.value)
        assert sent(proxy, "GET", rx) == 1  # the wrong shape is permanent
    # an error body that is a list, not {"errors": [...]}
    proxy.add_fault("status", status=400, body=b'["nope"]', method="GET", path_regex=r"/tags/list")
    with pytest.raises(RegistryError) as ei:
        c.list_tags(REPO)
    assert ei.value.status == 400
    # a token service answering a list, or an object without a token
    ts = token_server_factory(users={"bob": "pw-Secret1"})
    tproxy = fault_proxy_factory(ts.url)
    reg = registry_factory(token=dataclasses.replace(ts.auth_config(), realm=tproxy.url + "/token"))
    for body, words in [(b"[]", "a JSON list, expected an object"), (b'{"expires_in": 60}', "no token")]:
        tproxy.add_fault("status", status=200, body=body, method="GET", path_regex=r"^/token")
        with pytest.raises(RegistryError) as ei:
            client(reg.url, "tok", username="bob", password="pw-Secret1").list_tags("tok/app")
        assert words in str(ei.value) and "registry 'tok'" in str(ei.value)


def test_connection_refused_names_the_registry_and_attempts():
    c = client("http://127.0.0.1:1", "gone", retries=1)
    for call, method in [(lambda: c.list_tags("x"), "GET"), (lambda: c.head_manifest("x", "v1"), "HEAD")]:
        with pytest.raises(RegistryError) as ei:
            call()
        text = str(ei.value)
        assert "registry 'gone'" in text and "cannot connect" in text and f"{method} /v2/x/" in text
        assert ei.value.attempts == 2 and ei.value.transient
    assert c.stats["retries"] == 2
    with pytest.raises(requests.exceptions.ConnectionError):  # what would have escaped before
        requests.get("http://127.0.0.1:1/v2/", timeout=1)
