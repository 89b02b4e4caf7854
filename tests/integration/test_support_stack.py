"""The test stack itself, proven against the real processes on 127.0.0.1."""

import datetime as dt
import json
import os
import sys
import time

import jwt
import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from tests.support import images
from tests.support.images import MANIFEST_ACCEPT, BearerAuth, PushError
from tests.support.procs import LIVE_PROCESSES, ManagedProcess, free_port, wait_port, wait_until
from tests.support.tokenserver import parse_scope

T = 10  # seconds, every raw HTTP call


def raw_get_manifest(base, repo, ref, **kw):
    kw.setdefault("verify", False)
    return requests.get(
        f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}, timeout=T, **kw
    )


# -- processes ---------------------------------------------------------------------------
def test_managed_process_stopped_by_pid(tmp_path):
    port = free_port()
    code = f"import http.server as h; h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()"
    proc = ManagedProcess([sys.executable, "-c", code], log_path=tmp_path / "p.log", cwd=tmp_path)
    with proc:
        wait_port("127.0.0.1", port, timeout=10)
        assert proc in LIVE_PROCESSES and proc.running()
        os.kill(proc.pid, 0)  # alive
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=T, verify=False).status_code == 200
    assert not proc.running() and proc not in LIVE_PROCESSES
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    assert '"GET / HTTP/1.1" 200' in proc.log_text()  # stderr captured in the log file
    # a process that ignores SIGTERM is killed after the wait
    stubborn = ManagedProcess(
        [
            sys.executable,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
        ],
        log_path=tmp_path / "s.log",
    ).start()
    # SIGTERM only once the handler is set (it prints "up" after), however slow the start
    wait_until(lambda: "up" in stubborn.log_text(), interval=0.02, what="the stubborn child's handler")
    assert stubborn.stop(timeout=0.5) == -9


# -- registry: pushes read back byte-identical -------------------------------------------------
def test_push_docker_oci_index_and_read_back_identical(registry, unique_repo):
    created = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    d2 = images.push_image(
        registry.url, unique_repo, "docker", media="docker", created=created, seed=1, verify=False
    )
    oci = images.push_image(
        registry.url,
        unique_repo,
        "oci",
        media="oci",
        seed=2,
        verify=False,
        extra_annotations={"org.example": "x"},
    )
    idx = images.push_index(registry.url, unique_repo, "index", media="oci", verify=False)
    lst = images.push_index(registry.url, unique_repo, "list", media="docker", verify=False)
    for tag, pushed in [("docker", d2), ("oci", oci), ("index", idx), ("list", lst)]:
        for ref in (tag, pushed.digest):
            r = raw_get_manifest(registry.url, unique_repo, ref)
            assert r.status_code == 200, (tag, r.text)
            assert r.content == pushed.manifest_bytes
            assert r.headers["Docker-Content-Digest"] == pushed.digest == images.sha256_digest(r.content)
            assert r.headers["Content-Type"] == pushed.media_type
    assert d2.media_type == images.DOCKER_MANIFEST and oci.media_type == images.OCI_MANIFEST
    assert idx.media_type == images.OCI_INDEX and lst.media_type == images.DOCKER_LIST
    # the config blob carries `created`; layers are the pushed blobs
    cfg_resp = requests.get(
        f"{registry.url}/v2/{unique_repo}/blobs/{d2.config_digest}", timeout=T, verify=False
    )
    cfg = cfg_resp.json()
    assert cfg["created"].startswith("2024-01-02T03:04:05") and d2.created == created
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert [x["digest"] for x in json.loads(d2.manifest_bytes)["layers"]] == d2.layer_digests
    assert d2.size_total == len(d2.manifest_bytes) + len(cfg_resp.content) + 2048 + 1024
    # seeds make layers deterministic; index children are pushed by digest only (untagged)
    again = images.push_image(
        registry.url, unique_repo, "docker-again", seed=1, created=created, verify=False
    )
    assert again.digest == d2.digest
    assert sorted(images.list_tags(registry.url, unique_repo, verify=False)) == [
        "docker",
        "docker-again",
        "index",
        "list",
        "oci",
    ]
    body = json.loads(idx.manifest_bytes)
    assert [m["digest"] for m in body["manifests"]] == [c.digest for c in idx.children]
    assert [m["platform"]["architecture"] for m in body["manifests"]] == ["amd64", "arm64"]
    for child in idx.children + lst.children:
        assert raw_get_manifest(registry.url, unique_repo, child.digest).content == child.manifest_bytes


def test_signatures_referrers_retag_and_many(registry, unique_repo):
    img = images.push_image(registry.url, unique_repo, "v1", media="oci", verify=False)
    sig = images.push_signature(registry.url, unique_repo, img.digest, verify=False)
    att = images.push_signature(registry.url, unique_repo, img.digest, kind="att", verify=False)
    ref = images.push_referrer(registry.url, unique_repo, img, verify=False)
    hexd = img.digest.split(":")[1]
    assert sig.tag == f"sha256-{hexd}.sig" and att.tag == f"sha256-{hexd}.att"
    tags = images.list_tags(registry.url, unique_repo, verify=False)
    assert {"v1", f"sha256-{hexd}.sig", f"sha256-{hexd}.att", f"sha256-{hexd}"} == set(tags)
    stored = json.loads(raw_get_manifest(registry.url, unique_repo, ref.digest).content)
    assert stored["subject"]["digest"] == img.digest and stored["artifactType"]
    fallback = json.loads(raw_get_manifest(registry.url, unique_repo, f"sha256-{hexd}").content)
    assert [m["digest"] for m in fallback["manifests"]] == [ref.digest]
    ref2 = images.push_referrer(registry.url, unique_repo, img, verify=False)
    fallback = json.loads(raw_get_manifest(registry.url, unique_repo, f"sha256-{hexd}").content)
    assert [m["digest"] for m in fallback["manifests"]] == [ref.digest, ref2.digest]
    # retag keeps the digest
    assert images.tag_existing(registry.url, unique_repo, "v1-copy", img.digest, verify=False) == img.digest
    assert images.head_manifest(registry.url, unique_repo, "v1-copy", verify=False) == img.digest
    # push_many: the shared base layer is uploaded once, then cross-repo mounted (201)
    registry.clear_access_log()
    prefix = unique_repo + "/many"
    pushed = images.push_many(registry.url, 3, 2, prefix=prefix, workers=3, verify=False)
    assert len(pushed) == 6 and len({p.digest for p in pushed}) == 6
    assert len({p.layer_digests[0] for p in pushed}) == 1  # one base layer everywhere
    assert [p.tag for p in pushed[:2]] == ["build-0000", "build-0001"]
    assert pushed[1].created > pushed[0].created
    mounts = [e for e in registry.access_log(min_entries=2) if e.method == "POST" and "mount=" in e.query]
    assert len(mounts) == 2 and all(e.status == 201 for e in mounts)
    assert set(images.catalog(registry.url, verify=False)) >= {f"{prefix}-{i:04d}" for i in range(3)}
    assert registry.blob_path(pushed[0].layer_digests[0]).stat().st_size == 64 * 1024


def test_access_log_counts_requests(registry, unique_repo):
    img = images.push_image(registry.url, unique_repo, "v1", verify=False)
    registry.clear_access_log()
    assert registry.access_log() == []
    requests.get(f"{registry.url}/v2/", timeout=T, verify=False)
    requests.head(
        f"{registry.url}/v2/{unique_repo}/manifests/v1",
        headers={"Accept": MANIFEST_ACCEPT},
        timeout=T,
        verify=False,
    )
    raw_get_manifest(registry.url, unique_repo, "nope")
    requests.get(f"{registry.url}/v2/{unique_repo}/tags/list?n=5", timeout=T, verify=False)
    log = registry.access_log(min_entries=4)
    assert [(e.method, e.path, e.status) for e in log] == [
        ("GET", "/v2/", 200),
        ("HEAD", f"/v2/{unique_repo}/manifests/v1", 200),
        ("GET", f"/v2/{unique_repo}/manifests/nope", 404),
        ("GET", f"/v2/{unique_repo}/tags/list", 200),
    ]
    assert log[-1].query == "n=5" and log[0].user_agent.startswith("python-requests")
    assert images.head_manifest(registry.url, unique_repo, "v1", verify=False) == img.digest
    assert len(registry.access_log(min_entries=5)) == 5


def test_htpasswd_registry(registry_factory):
    reg = registry_factory(htpasswd=("alice", "s3cret-pw"))
    r = requests.get(f"{reg.url}/v2/", timeout=T, verify=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert requests.get(f"{reg.url}/v2/", auth=("alice", "wrong"), timeout=T, verify=False).status_code == 401
    assert (
        requests.get(f"{reg.url}/v2/", auth=("alice", "s3cret-pw"), timeout=T, verify=False).status_code
        == 200
    )
    with pytest.raises(PushError, match="401"):
        images.push_image(reg.url, "auth/app", "v1", verify=False)
    img = images.push_image(reg.url, "auth/app", "v1", auth=("alice", "s3cret-pw"), verify=False)
    assert (
        images.head_manifest(reg.url, "auth/app", "v1", auth=("alice", "s3cret-pw"), verify=False)
        == img.digest
    )
    assert "s3cret-pw" not in reg.config_path.read_text() and "$2y$" in (reg.dir / "htpasswd").read_text()


def test_tls_registry_needs_ca_file(registry_factory):
    reg = registry_factory(tls=True)
    assert reg.url.startswith("https://127.0.0.1:") and reg.ca_file
    img = images.push_image(reg.url, "tls/app", "v1", verify=reg.ca_file)
    r = raw_get_manifest(reg.url, "tls/app", "v1", verify=reg.ca_file)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img.digest
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{reg.url}/v2/", timeout=T, verify=True)  # system trust store
    localhost = reg.url.replace("127.0.0.1", "localhost")  # DNS SAN works too
    assert requests.get(f"{localhost}/v2/", timeout=T, verify=reg.ca_file).status_code == 200


@pytest.mark.parametrize("key_header", ["x5c", "kid"])
def test_token_server_with_real_registry(registry_factory, token_server_factory, key_header):
    ts = token_server_factory(users={"bob": "t0ken-pw"}, key_header=key_header)
    reg = registry_factory(token=ts.auth_config())
    img = images.push_image(reg.url, "tok/app", "v1", auth=("bob", "t0ken-pw"), token_server=ts, verify=False)
    (scope,) = ts.requests[-1].scopes  # distribution orders the actions randomly (a Go map)
    assert parse_scope(scope) | {"actions": sorted(parse_scope(scope)["actions"])} == {
        "type": "repository",
        "name": "tok/app",
        "actions": ["pull", "push"],
    }
    assert ts.requests[-1].user == "bob"
    # the raw flow: 401 + challenge, fetch a token, retry succeeds
    url = f"{reg.url}/v2/tok/app/manifests/v1"
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
    assert r.status_code == 401
    chal = r.headers["WWW-Authenticate"]
    assert chal.startswith(f'Bearer realm="{ts.realm}"') and f'service="{ts.service}"' in chal
    assert 'scope="repository:tok/app:pull"' in chal
    tr = requests.get(
        ts.realm,
        params={"service": ts.service, "scope": "repository:tok/app:pull"},
        auth=("bob", "t0ken-pw"),
        timeout=T,
        verify=False,
    )
    assert tr.status_code == 200
    body = tr.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == ts.service and claims["iss"] == ts.issuer and claims["sub"] == "bob"
    assert claims["access"] == [{"type": "repository", "name": "tok/app", "actions": ["pull"]}]
    header = jwt.get_unverified_header(body["token"])
    assert (key_header in header) and header["alg"] == "RS256"
    r = requests.get(
        url,
        headers={"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {body['token']}"},
        timeout=T,
        verify=False,
    )
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img.digest
    # the registry really checks the token: pull-only scope cannot push, a forged signature is refused
    r = requests.post(
        f"{reg.url}/v2/tok/app/blobs/uploads/",
        headers={"Authorization": f"Bearer {body['token']}"},
        timeout=T,
        verify=False,
    )
    assert r.status_code == 401 and "insufficient_scope" in r.headers["WWW-Authenticate"]
    other = token_server_factory(users={"bob": "t0ken-pw"}, key_header=key_header)  # same iss/aud, other key
    forged = other.issue("bob", ["repository:tok/app:pull"])[0]
    for bad in (forged, body["token"][:-8] + "AAAAAAAA"):
        r = requests.get(url, headers={"Authorization": f"Bearer {bad}"}, timeout=T, verify=False)
        assert r.status_code == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    # wrong password: the token server refuses; the catalog scope works
    assert (
        requests.get(
            ts.realm, params={"service": ts.service}, auth=("bob", "nope"), timeout=T, verify=False
        ).status_code
        == 401
    )
    assert ts.requests[-1].status == 401 and ts.requests[-1].token is None
    auth = BearerAuth("bob", "t0ken-pw", verify=False)
    assert images.catalog(reg.url, auth=auth, verify=False) == ["tok/app"]
    assert ts.requests[-1].scopes == ["registry:catalog:*"]
    # tokens are cached by the helper: more calls, no more token requests
    n = len(ts.requests)
    for _ in range(3):
        assert images.head_manifest(reg.url, "tok/app", "v1", auth=auth, verify=False) == img.digest
    assert len(ts.requests) == n + 1 and auth.token_fetches == 2
    assert "t0ken-pw" not in repr(ts.requests) + repr(auth)


def test_token_server_anonymous_and_acl(registry_factory, token_server_factory):
    ts = token_server_factory(
        users={"ci": "pw"},
        anonymous=True,
        acl=lambda user, typ, name, actions: actions if user else [a for a in actions if a == "pull"],
    )
    reg = registry_factory(token=ts.auth_config())
    img = images.push_image(reg.url, "acl/app", "v1", auth=("ci", "pw"), token_server=ts, verify=False)
    anon = BearerAuth(verify=False)
    assert images.head_manifest(reg.url, "acl/app", "v1", auth=anon, verify=False) == img.digest
    assert ts.requests[-1].user is None and ts.requests[-1].granted[0]["actions"] == ["pull"]
    with pytest.raises(PushError, match="401"):
        images.push_image(reg.url, "acl/app", "v2", auth=anon, verify=False)


# -- fault proxy ---------------------------------------------------------------------------
def test_fault_proxy_injects_then_forwards(registry, fault_proxy_factory, unique_repo):
    img = images.push_image(registry.url, unique_repo, "v1", verify=False)
    proxy = fault_proxy_factory(registry.url)
    url = f"{proxy.url}/v2/{unique_repo}/manifests/v1"
    proxy.add_fault("reset", method="GET", path_regex="/manifests/", times=1)
    proxy.add_fault("status", status=503, path_regex="/manifests/", times=2)
    proxy.add_fault("429", retry_after=2, path_regex="/manifests/")
    proxy.add_fault("slow", delay=0.3, path_regex="/manifests/")
    proxy.add_fault("status", status=401, method="DELETE", headers={"WWW-Authenticate": 'Basic realm="x"'})
    assert proxy.pending_faults() == 6
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
    for _ in range(2):
        r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
        assert r.status_code == 503 and r.content == b""
    r = requests.head(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    t0 = time.monotonic()
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
    assert time.monotonic() - t0 >= 0.3
    assert (
        r.status_code == 200
        and r.content == img.manifest_bytes
        and r.headers["Docker-Content-Digest"] == img.digest
    )
    r = requests.head(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=T, verify=False)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img.digest and r.content == b""
    assert proxy.pending_faults() == 1  # the DELETE fault did not match GET/HEAD
    assert [(x.status, x.fault) for x in proxy.requests] == [
        (None, "reset"),
        (503, "status"),
        (503, "status"),
        (429, "429"),
        (200, "slow"),
        (200, None),
    ]
    r = requests.delete(f"{proxy.url}/v2/{unique_repo}/manifests/{img.digest}", timeout=T, verify=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="x"'
    assert images.head_manifest(registry.url, unique_repo, "v1", verify=False) == img.digest  # not forwarded


def test_fault_proxy_uploads_stay_on_proxy(registry, fault_proxy_factory, unique_repo):
    proxy = fault_proxy_factory(registry.url)
    proxy.add_fault("reset", method="PUT", path_regex="/blobs/uploads/")  # dies mid-upload, body drained
    with pytest.raises(requests.exceptions.ConnectionError):
        images.push_image(proxy.url, unique_repo, "v1", verify=False)
    proxy.add_fault("status", status=502, method="PUT", path_regex="/manifests/")
    with pytest.raises(PushError, match="502"):
        images.push_image(proxy.url, unique_repo, "v1", verify=False)
    proxy.clear()
    img = images.push_image(proxy.url, unique_repo, "v1", verify=False, layers=[os.urandom(300_000)])
    assert images.head_manifest(registry.url, unique_repo, "v1", verify=False) == img.digest
    puts = [x for x in proxy.requests if x.method == "PUT" and "/blobs/uploads/" in x.path]
    assert puts and all(x.status == 201 for x in puts)  # Location was rewritten to the proxy
    streamed = requests.get(
        f"{proxy.url}/v2/{unique_repo}/blobs/{img.layer_digests[0]}", timeout=T, verify=False
    )
    assert images.sha256_digest(streamed.content) == img.layer_digests[0] and len(streamed.content) == 300_000


# -- maintenance -----------------------------------------------------------------------------
def test_readonly_toggle_and_garbage_collect(registry_factory):
    reg = registry_factory()
    keep = images.push_image(reg.url, "ro/app", "keep", verify=False)
    gone = images.push_image(reg.url, "ro/app", "gone", verify=False)
    untagged = images.push_image(reg.url, "ro/app", None, verify=False)
    url, pid = reg.url, reg.pid
    reg.set_readonly(True)
    assert reg.url == url and reg.pid != pid
    r = requests.post(f"{reg.url}/v2/ro/app/blobs/uploads/", timeout=T, verify=False)
    assert r.status_code == 405
    r = requests.put(
        f"{reg.url}/v2/ro/app/manifests/again",
        data=keep.manifest_bytes,
        headers={"Content-Type": keep.media_type},
        timeout=T,
        verify=False,
    )
    assert r.status_code == 405
    assert (
        requests.delete(f"{reg.url}/v2/ro/app/manifests/{gone.digest}", timeout=T, verify=False).status_code
        == 405
    )
    assert images.head_manifest(reg.url, "ro/app", "keep", verify=False) == keep.digest  # reads still work
    reg.set_readonly(False)
    again = images.tag_existing(reg.url, "ro/app", "again", keep.digest, verify=False)
    assert again == keep.digest
    # garbage-collect: a deleted manifest's own blobs go, tagged and untagged manifests stay
    assert images.delete_manifest(reg.url, "ro/app", gone.digest, verify=False) == 202
    dry = reg.garbage_collect(dry_run=True)
    assert dry.returncode == 0 and reg.blob_path(gone.layer_digests[0]).exists()
    res = reg.garbage_collect()
    assert res.returncode == 0, res.stderr
    assert not reg.blob_path(gone.layer_digests[0]).exists()
    for img in (keep, untagged):
        assert reg.blob_path(img.layer_digests[0]).exists() and reg.blob_path(img.config_digest).exists()
    assert images.head_manifest(reg.url, "ro/app", untagged.digest, verify=False) == untagged.digest
    assert reg.root is not None and (reg.root / "docker/registry/v2/repositories/ro/app").is_dir()


# -- S3 ------------------------------------------------------------------------------------
def test_moto_server_with_boto3(moto_server, s3_bucket):
    s3 = moto_server.client()
    moto_server.clear_request_log()
    s3.put_object(Bucket=s3_bucket, Key="snap/a.json", Body=b"{}")
    s3.put_object(Bucket=s3_bucket, Key="snap/b.json", Body=b"[]")
    assert s3.get_object(Bucket=s3_bucket, Key="snap/b.json")["Body"].read() == b"[]"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="snap/")["Contents"]]
    assert keys == ["snap/a.json", "snap/b.json"]
    puts = moto_server.object_puts(s3_bucket, "snap/")
    assert [p.path for p in puts] == [f"/{s3_bucket}/snap/a.json", f"/{s3_bucket}/snap/b.json"]
    assert any(r.method == "GET" and r.path == f"/{s3_bucket}/snap/b.json" for r in moto_server.request_log())


def test_s3_backed_registry(registry_factory, moto_server, s3_bucket):
    reg = registry_factory(storage="s3", s3=moto_server.s3_config(s3_bucket))
    assert reg.root is None and "AWS_CA_BUNDLE" not in reg.env()
    moto_server.clear_request_log()
    img = images.push_image(reg.url, "s3/app", "v1", media="oci", verify=False)
    assert raw_get_manifest(reg.url, "s3/app", "v1").content == img.manifest_bytes
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"docker/registry/v2/blobs/sha256/{img.config_digest[7:9]}/{img.config_digest[7:]}/data" in keys
    assert any(k.endswith("/_manifests/tags/v1/current/link") for k in keys)
    assert moto_server.object_puts(s3_bucket, "docker/registry/v2/")


# -- pushgateway and webhook ------------------------------------------------------------------
def test_pushgateway_accepts_push(pushgateway):
    reg = CollectorRegistry()
    g = Gauge("registry_storage_bytes_total", "bytes", ["registry"], registry=reg)
    g.labels(registry="local").set(1234)
    push_to_gateway(pushgateway.host, job="regkeeper_test", registry=reg, timeout=T)
    text = pushgateway.metrics_text()
    assert 'registry_storage_bytes_total{instance="",job="regkeeper_test",registry="local"} 1234' in text
    pushgateway.wipe()
    assert "registry_storage_bytes_total{" not in pushgateway.metrics_text()


def test_webhook_receiver_records_posts(webhook_receiver):
    webhook_receiver.status = [500]
    r = requests.post(f"{webhook_receiver.url}/alert", json={"level": "warn"}, timeout=T, verify=False)
    assert r.status_code == 500
    r = requests.post(f"{webhook_receiver.url}/alert", json={"level": "critical"}, timeout=T, verify=False)
    assert r.status_code == 200
    got = webhook_receiver.wait_for(2)
    assert [g.json for g in got] == [{"level": "warn"}, {"level": "critical"}]
    assert got[0].path == "/alert" and got[0].headers["Content-Type"] == "application/json"
