"""The OCI client against a real distribution registry, every path."""

import hashlib
import json
import logging
import os

import pytest

from regkeeper.cache import DigestCache
from regkeeper.errors import (
    AuthError,
    DeletesDisabledError,
    NotFoundError,
    RegistryError,
    UnsupportedManifestError,
)
from regkeeper.models import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from regkeeper.oci import RegistryClient, parse_manifest
from tests.support import images


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def client_for(reg, **kw) -> RegistryClient:
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0.05)
    return RegistryClient("test", reg.url, **kw)


def test_four_manifest_kinds_read_back_identical(registry, tmp_path):
    c = client_for(registry, cache=DigestCache(tmp_path / "cache"))
    d2 = images.push_image(registry.url, "kinds/docker", "v1", media="docker")
    oci = images.push_image(registry.url, "kinds/oci", "v1", media="oci")
    idx = images.push_index(registry.url, "kinds/ociindex", "v1", media="oci")
    lst = images.push_index(registry.url, "kinds/dockerlist", "v1", media="docker")
    for repo, pushed, mt, kind in [
        ("kinds/docker", d2, DOCKER_MANIFEST, "image"),
        ("kinds/oci", oci, OCI_MANIFEST, "image"),
        ("kinds/ociindex", idx, OCI_INDEX, "index"),
        ("kinds/dockerlist", lst, DOCKER_LIST, "index"),
    ]:
        head = c.head_manifest(repo, "v1")
        assert head.digest == pushed.digest, repo
        m = c.get_manifest(repo, "v1")
        assert m.digest == pushed.digest and sha(m.raw) == pushed.digest
        assert m.media_type == mt and m.kind == kind
        if kind == "index":
            assert [ch.digest for ch in m.children] == [ch.digest for ch in pushed.children]
            assert sorted(ch.platform for ch in m.children) == ["linux/amd64", "linux/arm64"]
            for ch in m.children:  # untagged children resolve by digest, byte-identical
                assert c.get_manifest(repo, ch.digest).digest == ch.digest
        else:
            assert m.config.digest == pushed.config_digest
            assert [layer.digest for layer in m.layers] == pushed.layer_digests
            assert all(layer.size > 0 for layer in m.layers)


def test_manifest_cache_avoids_refetch(registry, tmp_path):
    img = images.push_image(registry.url, "cache/app", "v1")
    c = client_for(registry, cache=DigestCache(tmp_path / "cache"))
    c.get_manifest("cache/app", img.digest)
    gets = c.stats["GET"]
    c2 = client_for(registry, cache=DigestCache(tmp_path / "cache"))  # a later run, same cache dir
    m = c2.get_manifest("cache/app", img.digest)
    assert m.digest == img.digest
    assert c2.stats["GET"] == 0 and gets == 1
    # a tampered cache entry is a miss, not bad data
    p = next((tmp_path / "cache" / "manifests").rglob(img.digest.split(":")[1]))
    p.write_bytes(b"{}")
    assert (
        client_for(registry, cache=DigestCache(tmp_path / "cache"))
        .get_manifest("cache/app", img.digest)
        .digest
        == img.digest
    )


def test_catalog_pagination_past_100(registry):
    names = [f"page/r{i:03d}" for i in range(130)]
    images.push_many(registry.url, repos=names, tags_per_repo=1)
    c = client_for(registry)
    got = [r for r in c.catalog(page_size=100) if r.startswith("page/")]
    assert got == sorted(names)
    before = c.stats["GET"]
    got50 = [r for r in c.catalog(page_size=50) if r.startswith("page/")]
    assert got50 == sorted(names)
    assert c.stats["GET"] - before >= 3  # really followed Link headers


def test_tags_pagination_and_empty_repository(registry):
    img = images.push_image(registry.url, "tags/many", "t000")
    for i in range(1, 25):
        images.tag_existing(registry.url, "tags/many", f"t{i:03d}", img.digest)
    c = client_for(registry)
    assert len(c.list_tags("tags/many", page_size=10)) == 25
    # deleting the only digest leaves a repository with no tags: an empty list, not an error
    assert c.delete_manifest("tags/many", img.digest) is True
    assert c.list_tags("tags/many") == []
    assert c.delete_manifest("tags/many", img.digest) is False  # 404 = already gone
    with pytest.raises(NotFoundError):
        c.list_tags("tags/never-existed")


def test_blob_upload_mount_and_stream(registry):
    c = client_for(registry)
    data = os.urandom(300_000)
    d = sha(data)
    c.upload_blob(
        "blobs/a",
        d,
        lambda: iter([data[i : i + 70_000] for i in range(0, len(data), 70_000)]),
        size=len(data),
        chunk_size=64 * 1024,
    )
    assert c.head_blob("blobs/a", d) == len(data)
    assert c.head_blob("blobs/b", d) is None
    assert c.mount_blob("blobs/b", d, "blobs/a") is None  # 201: mounted
    assert c.head_blob("blobs/b", d) == len(data)
    small = b"monolithic"
    c.upload_blob("blobs/a", sha(small), small)
    with c.stream_blob("blobs/a", d) as (it, size):
        assert size == len(data)
        assert b"".join(it) == data
    # mount from a repository that does not hold the blob: 202 + an upload location
    other = os.urandom(1000)
    c.upload_blob("blobs/c", sha(other), other)
    loc = c.mount_blob("blobs/d", sha(other), "blobs/nothere")
    assert loc is not None
    c.upload_blob("blobs/d", sha(other), other, location=loc)
    assert c.head_blob("blobs/d", sha(other)) == 1000
    with pytest.raises(RegistryError) as ei:  # wrong digest: the registry refuses
        c.upload_blob("blobs/a", sha(b"x"), b"y")
    assert ei.value.status == 400


def test_put_manifest_and_digest_check(registry):
    img = images.push_image(registry.url, "put/src", "v1", media="oci")
    c = client_for(registry)
    for dg in img.layer_digests + [img.config_digest]:
        assert c.mount_blob("put/dst", dg, "put/src") is None
    assert c.put_manifest("put/dst", "copied", img.manifest_bytes, img.media_type) == img.digest
    assert c.head_manifest("put/dst", "copied").digest == img.digest
    created, source = c.image_created("put/dst", c.get_manifest("put/dst", "copied"))
    assert source == "config" and created is not None


def test_schema1_and_garbage_rejected_clearly():
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    with pytest.raises(UnsupportedManifestError) as ei:
        parse_manifest(raw, sha(raw))
    assert "schema1" in str(ei.value)
    with pytest.raises(UnsupportedManifestError):
        parse_manifest(b"not json", "sha256:00")


def test_delete_disabled_405(registry_factory):
    reg = registry_factory(delete_enabled=False)
    img = images.push_image(reg.url, "nodelete/app", "v1")
    c = client_for(reg)
    with pytest.raises(DeletesDisabledError) as ei:
        c.delete_manifest("nodelete/app", img.digest)
    assert ei.value.status == 405 and "deletes are disabled" in str(ei.value)
    assert c.head_manifest("nodelete/app", "v1").digest == img.digest


def test_basic_auth(registry_factory, caplog):
    reg = registry_factory(htpasswd=("alice", "s3cret-Passw0rd"))
    images.push_image(reg.url, "auth/app", "v1", auth=("alice", "s3cret-Passw0rd"))
    with caplog.at_level(logging.DEBUG):
        ok = client_for(reg, username="alice", password="s3cret-Passw0rd")
        assert ok.list_tags("auth/app") == ["v1"]
        bad = client_for(reg, username="alice", password="wrong-Passw0rd")
        with pytest.raises(AuthError) as ei:
            bad.list_tags("auth/app")
        anon = client_for(reg)
        with pytest.raises(AuthError):
            anon.ping()
    assert ei.value.status == 401
    assert bad.stats["GET"] == 1  # a 401 is never retried (the challenge re-try is basic->basic: no)
    text = caplog.text + str(ei.value) + repr(ok) + repr(bad)
    assert "s3cret-Passw0rd" not in text and "wrong-Passw0rd" not in text


def test_token_flow(registry_factory, token_server_factory, caplog):
    ts = token_server_factory(users={"bob": "t0ken-Pass!"}, anonymous=False)
    reg = registry_factory(token=ts.auth_config())
    img = images.push_image(reg.url, "tok/app", "v1", token_server=ts, auth=("bob", "t0ken-Pass!"))
    ts.clear()
    with caplog.at_level(logging.DEBUG):
        c = client_for(reg, username="bob", password="t0ken-Pass!")
        assert c.list_tags("tok/app") == ["v1"]
        for _ in range(5):
            assert c.head_manifest("tok/app", "v1").digest == img.digest
        assert len(ts.requests) == 1  # one token for the pull scope, cached
        assert c.delete_manifest("tok/app", img.digest) is True  # delete scope: one more token
        assert len(ts.requests) == 2
        cat = c.catalog()
        assert "tok/app" in cat
        bad = client_for(reg, username="bob", password="nope")
        with pytest.raises(AuthError) as ei:
            bad.list_tags("tok/app")
    tokens = [r.token for r in ts.requests if getattr(r, "token", None)]
    text = caplog.text + str(ei.value) + repr(c)
    assert "t0ken-Pass!" not in text
    for t in tokens:
        assert t not in text


def test_tls_with_ca_file_and_clear_failure(registry_factory):
    reg = registry_factory(tls=True)
    images.push_image(reg.url, "tls/app", "v1", verify=reg.ca_file)
    ok = client_for(reg, verify=reg.ca_file)
    assert ok.list_tags("tls/app") == ["v1"]
    bad = client_for(reg)  # system trust store: the self-signed cert is not in it
    with pytest.raises(RegistryError) as ei:
        bad.list_tags("tls/app")
    assert "TLS verification failed" in str(ei.value) and "caFile" in str(ei.value)


def test_transient_faults_retried_to_success(registry, fault_proxy_factory):
    img = images.push_image(registry.url, "faults/app", "v1")
    proxy = fault_proxy_factory(registry.url)
    c = RegistryClient("test", proxy.url, retries=4, backoff=0.05)
    proxy.add_fault("reset", method="GET", path_regex=r"/tags/list", times=1)
    proxy.add_fault("status", status=503, method="HEAD", times=2)
    proxy.add_fault("429", retry_after=1, method="GET", path_regex=r"/manifests/", times=1)
    proxy.add_fault("status", status=502, method="DELETE", times=1)
    assert c.list_tags("faults/app") == ["v1"]
    assert c.head_manifest("faults/app", "v1").digest == img.digest
    assert c.get_manifest("faults/app", "v1").digest == img.digest
    assert c.delete_manifest("faults/app", img.digest) is True
    assert proxy.pending_faults() == 0


def test_401_not_retried_and_retries_bounded(registry, fault_proxy_factory):
    images.push_image(registry.url, "faults/b", "v1")
    proxy = fault_proxy_factory(registry.url)
    c = RegistryClient("test", proxy.url, retries=2, backoff=0.01)
    proxy.add_fault("status", status=401, method="GET", path_regex="/tags/list", times=5)
    proxy.clear()
    with pytest.raises(AuthError) as ei:
        c.list_tags("faults/b")
    assert ei.value.status == 401
    assert len([r for r in proxy.requests if "/tags/list" in r.path]) == 1
    proxy.clear_faults()
    proxy.add_fault("status", status=503, method="GET", path_regex="/tags/list", times=10)
    with pytest.raises(RegistryError) as ei:
        c.list_tags("faults/b")
    assert ei.value.status == 503 and "retries" in str(ei.value)
    assert len([r for r in proxy.requests if "/tags/list" in r.path]) == 1 + 3  # 1 + 2 retries + the 401 one


def test_digest_mismatch_detected(registry, tmp_path):
    img = images.push_image(registry.url, "mismatch/app", "v1")
    # a cache poisoned under the right name cannot be written: put() refuses wrong content
    cache = DigestCache(tmp_path / "c")
    cache.put("manifests", img.digest, b"{}")
    assert cache.get("manifests", img.digest) is None
    c = client_for(registry, cache=cache)
    assert c.get_manifest("mismatch/app", img.digest).digest == img.digest
    assert cache.get("manifests", img.digest) is not None
