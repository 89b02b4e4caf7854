"""The one blob transfer (regkeeper.oci.transfer) between two real distribution 2.8 registries,
each behind a fault proxy whose record counts what was sent: present (no upload), mount 201,
a mount answered 202 (the ``from`` repository lacks the blob) uploaded into that very session,
chunks in constant memory, a source stream broken mid-way restarted from scratch, an error the
transport already retried never retried again, and every unfinished session cancelled."""

import hashlib
import re
import tracemalloc
from urllib.parse import urlsplit

import pytest
import requests

from regkeeper.errors import RegistryError, SourceBlobMissing
from regkeeper.oci import RegistryClient
from regkeeper.oci.transfer import (
    MOUNTED,
    PRESENT,
    UNAVAILABLE,
    UPLOADED,
    BlobTransfer,
    BytesSource,
    RegistrySource,
)
from regkeeper.retry import RetryPolicy
from tests.support import images
from tests.support.registry import RegistryServer

KIB = 1024
SMALL = dict(chunk_size=64 * KIB, monolithic_max=16 * KIB)  # thresholds scaled down


@pytest.fixture(scope="module")
def regs(tmp_path_factory):
    src = RegistryServer(tmp_path_factory.mktemp("xfer-src"))
    try:
        dst = RegistryServer(tmp_path_factory.mktemp("xfer-dst"))
        try:
            yield src, dst
        finally:
            dst.stop()
    finally:
        src.stop()  # also when dst could not start


@pytest.fixture
def net(regs, fault_proxy_factory):
    """(source proxy, target proxy, source client, target client)."""
    src, dst = regs
    sp, dp = fault_proxy_factory(src.url), fault_proxy_factory(dst.url)
    sc = RegistryClient("primary", sp.url, retries=2, backoff=0.01)  # 3 attempts
    dc = RegistryClient("replica", dp.url, retries=2, backoff=0.01)
    return sp, dp, sc, dc


def blob(n: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def sent(proxy, method: str, rx: str = "") -> list:
    return [r for r in proxy.requests if r.method == method and re.search(rx, r.path)]


def target_bytes(dst_url: str, repo: str, digest: str) -> bytes:
    r = requests.get(f"{dst_url}/v2/{repo}/blobs/{digest}", timeout=30)
    assert r.status_code == 200
    return r.content


def upload_gone(proxy, path: str) -> bool:
    """The upload session at ``path`` (as sent through the proxy) no longer exists."""
    return requests.get(proxy.url + path, timeout=10).status_code == 404


def test_present_blob_is_not_uploaded(regs, net, unique_repo):
    _, dst = regs
    sp, dp, sc, dc = net
    data = blob(3000, "present")
    digest, _ = images.push_blob(dst.url, unique_repo, data)
    out = BlobTransfer(dc).ensure(unique_repo, digest, len(data), [RegistrySource(sc, "nowhere")])
    assert (out.action, out.size) == (PRESENT, len(data))
    assert [r.method for r in dp.requests] == ["HEAD"] and sp.requests == []


def test_mount_201_moves_no_bytes(regs, net, unique_repo):
    _, dst = regs
    sp, dp, sc, dc = net
    data = blob(5000, "mount")
    digest, _ = images.push_blob(dst.url, unique_repo + "-a", data)
    out = BlobTransfer(dc).ensure(
        unique_repo + "-b",
        digest,
        len(data),
        [RegistrySource(sc, "nowhere")],
        mount_from=[unique_repo + "-a"],
        check_present=False,
    )
    assert (out.action, out.from_repo) == (MOUNTED, unique_repo + "-a")
    posts = sent(dp, "POST")
    assert len(posts) == 1 and "mount=" in posts[0].path and posts[0].status == 201
    assert {r.method for r in dp.requests} == {"POST"} and sp.requests == []
    assert target_bytes(dst.url, unique_repo + "-b", digest) == data


@pytest.mark.parametrize("size", [10 * KIB, 200 * KIB], ids=["monolithic", "chunked"])
def test_mount_answered_202_is_uploaded_into_that_session(regs, net, unique_repo, size):
    src, dst = regs
    sp, dp, sc, dc = net
    data = blob(size, f"202-{size}")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    # distribution answers 202 with an upload session: the "from" repository lacks the blob
    out = BlobTransfer(dc, **SMALL).ensure(
        unique_repo,
        digest,
        size,
        [RegistrySource(sc, unique_repo)],
        mount_from=["not/holding-it"],
        check_present=False,
    )
    assert (out.action, out.size, out.restarts) == (UPLOADED, size, 0)
    posts = sent(dp, "POST")
    assert len(posts) == 1 and "mount=" in posts[0].path and posts[0].status == 202  # no second session
    puts = sent(dp, "PUT")
    assert len(puts) == 1 and puts[0].status == 201 and digest in requests.utils.unquote(puts[0].path)
    assert len(sent(dp, "PATCH")) == (0 if size <= SMALL["monolithic_max"] else 4)  # 64 KiB chunks
    assert sent(dp, "DELETE") == []
    assert target_bytes(dst.url, unique_repo, digest) == data


def test_large_blob_is_chunked_in_constant_memory(regs, net, unique_repo):
    src, dst = regs
    sp, dp, sc, dc = net
    size = 24 * 1024 * KIB
    digest, _ = images.push_blob(src.url, unique_repo, blob(size, "large"))
    xfer = BlobTransfer(dc, chunk_size=1024 * KIB, monolithic_max=1024 * KIB)
    tracemalloc.start()
    try:
        out = xfer.ensure(unique_repo, digest, size, [RegistrySource(sc, unique_repo)], check_present=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (out.action, out.size) == (UPLOADED, size)
    assert peak < 8 * 1024 * KIB, f"peak {peak / 2**20:.1f} MiB for a 24 MiB blob"
    assert len(sent(dp, "PATCH")) == 24 and len(sent(dp, "POST")) == 1
    r = requests.head(f"{dst.url}/v2/{unique_repo}/blobs/{digest}", timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == size


@pytest.mark.parametrize("fault", ["reset_body", "truncate"])
def test_source_stream_broken_mid_way_restarts_the_blob(regs, net, unique_repo, fault, caplog):
    src, dst = regs
    sp, dp, sc, dc = net
    data = blob(300 * KIB, f"broken-{fault}")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    sp.add_fault(fault, method="GET", path_regex=rf"/blobs/{digest}$", times=1, part=0.4)
    with caplog.at_level("WARNING", logger="regkeeper.oci.transfer"):
        out = BlobTransfer(dc, **SMALL, restarts=RetryPolicy(3, 0.01)).ensure(
            unique_repo, digest, len(data), [RegistrySource(sc, unique_repo)], check_present=False
        )
    assert sp.pending_faults() == 0
    assert (out.action, out.restarts) == (UPLOADED, 1)
    assert len(sent(sp, "GET", digest)) == 2  # the stream, from scratch, twice
    # the first session was cancelled (it had chunks), the second one finished
    posts, deletes = sent(dp, "POST"), sent(dp, "DELETE")
    assert len(posts) == 2 and len(deletes) == 1 and deletes[0].status == 204
    assert upload_gone(dp, deletes[0].path)
    assert target_bytes(dst.url, unique_repo, digest) == data  # digest verified by the target
    assert any("must restart" in r.getMessage() and "attempt 1/3" in r.getMessage() for r in caplog.records)


def test_small_blob_read_retried_by_the_transport_not_restarted(regs, net, unique_repo):
    src, _ = regs
    sp, dp, sc, dc = net
    data = blob(8 * KIB, "small-broken")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    sp.add_fault("reset_body", method="GET", path_regex=rf"/blobs/{digest}$", times=1)
    out = BlobTransfer(dc, **SMALL).ensure(
        unique_repo, digest, len(data), [RegistrySource(sc, unique_repo)], check_present=False
    )
    assert (out.action, out.restarts) == (UPLOADED, 0) and sc.stats["retries"] == 1
    assert len(sent(dp, "POST")) == 1 and sent(dp, "DELETE") == []


@pytest.mark.parametrize("size", [8 * KIB, 200 * KIB])  # one PUT; chunked PATCHes + final PUT
def test_lost_answer_to_the_final_put_is_not_a_failure(regs, net, unique_repo, size):
    """The registry committed the blob but its answer to the final PUT was lost (a reset after
    the request took effect): the transport's retry finds the session closed (404
    BLOB_UPLOAD_UNKNOWN); the blob is in the repository, so the upload succeeded, once."""
    src, dst = regs
    sp, dp, sc, dc = net
    data = blob(size, f"lost-{size}")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    dp.add_fault("reset_after", method="PUT", path_regex=r"/blobs/uploads/.*digest=", times=1)
    out = BlobTransfer(dc, **SMALL).ensure(
        unique_repo, digest, size, [RegistrySource(sc, unique_repo)], check_present=False
    )
    assert dp.pending_faults() == 0
    assert (out.action, out.restarts) == (UPLOADED, 0) and dc.stats["retries"] == 1
    puts = sent(dp, "PUT")
    assert [r.status for r in puts] == [None, 404]  # committed, answer lost; then 404
    assert len(sent(dp, "POST")) == 1 and sent(dp, "DELETE") == []  # uploaded once
    assert target_bytes(dst.url, unique_repo, digest) == data


def test_error_already_retried_by_the_transport_is_not_retried_again(regs, net, unique_repo):
    src, _ = regs
    sp, dp, sc, dc = net
    data = blob(100 * KIB, "persistent")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    sp.add_fault("status", status=503, method="GET", path_regex=rf"/blobs/{digest}$", times=100)
    with pytest.raises(RegistryError) as ei:
        BlobTransfer(dc, **SMALL, restarts=RetryPolicy(3, 0.01)).ensure(
            unique_repo, digest, len(data), [RegistrySource(sc, unique_repo)], check_present=False
        )
    assert ei.value.status == 503 and ei.value.attempts == 3 and "after 3 attempts" in str(ei.value)
    assert len(sent(sp, "GET", digest)) == 3  # the transport's 3, not 3 x 3
    posts, deletes = sent(dp, "POST"), sent(dp, "DELETE")
    assert len(posts) == 1 and len(deletes) == 1 and upload_gone(dp, deletes[0].path)


def test_failed_upload_cancels_its_session(regs, net, unique_repo):
    src, dst = regs
    sp, dp, sc, dc = net
    data = blob(150 * KIB, "cancel")
    digest, _ = images.push_blob(src.url, unique_repo, data)
    # a chunk the target refuses (PATCH is not retried by the transport): each start is
    # cancelled, then the restarts run out
    dp.add_fault("status", status=503, method="PATCH", times=100)
    with pytest.raises(RegistryError) as ei:
        BlobTransfer(dc, **SMALL, restarts=RetryPolicy(2, 0.01)).ensure(
            unique_repo, digest, len(data), [RegistrySource(sc, unique_repo)], check_present=False
        )
    assert ei.value.method == "PATCH" and ei.value.status == 503 and ei.value.attempts == 2
    posts, deletes = sent(dp, "POST"), sent(dp, "DELETE")
    assert len(posts) == 2 and len(deletes) == 2
    for d in deletes:  # the DELETE went to the session's own location, and the session is gone
        assert urlsplit(d.path).path.startswith(f"/v2/{unique_repo}/blobs/uploads/")
        assert d.status == 204 and upload_gone(dp, d.path)
    assert not images.blob_exists(dst.url, unique_repo, digest)

    # a permanent failure after the last chunk (the source served fewer bytes than announced)
    dp.clear_faults()
    dp.clear()
    with pytest.raises(RegistryError) as ei:
        BlobTransfer(dc, **SMALL).ensure(
            unique_repo, digest, len(data) + 1, [RegistrySource(sc, unique_repo)], check_present=False
        )
    assert f"uploaded {len(data)} bytes, expected {len(data) + 1}" in str(ei.value)
    deletes = sent(dp, "DELETE")
    assert len(sent(dp, "POST")) == 1 and len(deletes) == 1 and upload_gone(dp, deletes[0].path)
    assert not images.blob_exists(dst.url, unique_repo, digest)


def test_a_202_session_without_a_source_is_cancelled(regs, net, unique_repo):
    sp, dp, sc, dc = net
    data = blob(4 * KIB, "nosource")
    digest = images.sha256_digest(data)
    out = BlobTransfer(dc).ensure(
        unique_repo,
        digest,
        len(data),
        [RegistrySource(sc, unique_repo, check=True)],
        mount_from=["not/holding-it"],
        check_present=False,
    )
    assert out.action == UNAVAILABLE and not out.available
    posts, deletes = sent(dp, "POST"), sent(dp, "DELETE")
    assert len(posts) == 1 and posts[0].status == 202
    assert len(deletes) == 1 and deletes[0].status == 204 and upload_gone(dp, deletes[0].path)
    assert sent(dp, "PUT") == [] and sent(dp, "PATCH") == []


def test_bytes_in_hand_and_gone_source(regs, net, unique_repo):
    _, dst = regs
    sp, dp, sc, dc = net
    data = blob(20 * KIB, "bytes")  # above monolithic_max: bytes go in one PUT anyway
    digest = images.sha256_digest(data)
    wrong = BytesSource(b"not the blob")
    out = BlobTransfer(dc, **SMALL).ensure(
        unique_repo, digest, len(data), [wrong, BytesSource(data)], check_present=False
    )
    assert out.action == UPLOADED and out.source is not wrong and sent(dp, "PATCH") == []
    assert target_bytes(dst.url, unique_repo, digest) == data
    # a registry source that answers 404: SourceBlobMissing, the session it needed cancelled
    other = blob(40 * KIB, "gone")
    with pytest.raises(SourceBlobMissing):
        BlobTransfer(dc, **SMALL).ensure(
            unique_repo,
            images.sha256_digest(other),
            len(other),
            [RegistrySource(sc, unique_repo)],
            check_present=False,
        )
    deletes = sent(dp, "DELETE")
    assert len(deletes) == 1 and upload_gone(dp, deletes[0].path)


def test_dry_run_only_heads(regs, net, unique_repo):
    src, dst = regs
    sp, dp, sc, dc = net
    data = blob(6 * KIB, "dry")
    digest, _ = images.push_blob(dst.url, unique_repo + "-holder", data)
    images.push_blob(src.url, unique_repo, data)
    x = BlobTransfer(dc)
    out = x.ensure(
        unique_repo,
        digest,
        len(data),
        [RegistrySource(sc, unique_repo)],
        mount_if_present=["not/holding-it", unique_repo + "-holder"],
        check_present=False,
        dry_run=True,
    )
    assert (out.action, out.from_repo, out.dry_run) == (MOUNTED, unique_repo + "-holder", True)
    out = x.ensure(
        unique_repo,
        digest,
        len(data),
        [RegistrySource(sc, ["nope", unique_repo])],
        mount_if_present=["not/holding-it"],
        dry_run=True,
    )
    assert out.action == UPLOADED and out.source.repo == unique_repo
    out = x.ensure(unique_repo, digest, len(data), [BytesSource(probe=lambda: False)], dry_run=True)
    assert out.action == UNAVAILABLE
    assert {r.method for r in dp.requests + sp.requests} == {"HEAD"}
    assert not images.blob_exists(dst.url, unique_repo, digest)
