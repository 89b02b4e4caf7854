"""Pull events from a real distribution 2.8 (``notifications.endpoints``) into the receiver:
pulls by skopeo and curl are stored with the right digest and time; regkeeper's own scan and
replication are not; a receiver down for a while loses nothing the registry retried; a token
mismatch is rejected and counted, and the token is never logged."""

import logging
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from regkeeper import backup as B
from regkeeper.config import ReplicationRule
from regkeeper.inventory import scan
from regkeeper.oci import RegistryClient
from regkeeper.replicate import replicate_target
from tests.support import images
from tests.support.procs import wait_until
from tests.support.pulls import NAME, PullStack
from tests.support.registry import RegistryServer

ACCEPT = ",".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@pytest.fixture
def stack(tmp_path):
    s = PullStack(tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def any_store_stack(tmp_path, pull_store_url):
    """The same stack on SQLite and on PostgreSQL."""
    s = PullStack(tmp_path, store_url=pull_store_url).start()
    try:
        yield s
    finally:
        s.stop()


def curl_manifest(url: str, repo: str, ref: str, method: str = "GET") -> None:
    head = ["-I"] if method == "HEAD" else []
    subprocess.run(
        [
            "curl",
            "-sSf",
            *head,
            "-o",
            "/dev/null",
            "-H",
            f"Accept: {ACCEPT}",
            f"{url}/v2/{repo}/manifests/{ref}",
        ],
        check=True,
        timeout=30,
    )


def by_digest(rows: list[dict]) -> dict[str, dict]:
    return {r["digest"]: r for r in rows}


def test_skopeo_and_curl_pulls_are_stored_with_digest_and_time(any_store_stack):
    stack = any_store_stack
    url = stack.reg.url
    a = images.push_image(url, "team/app", "v1", seed=1)
    b = images.push_image(url, "team/app", "v2", seed=2, media="oci")
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{stack.reg.host}/team/app:v1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    curl_manifest(url, "team/app", b.digest)
    rows = by_digest(stack.wait_rows(2))
    t1 = datetime.now(UTC) + timedelta(seconds=1)
    ra, rb = rows[a.digest], rows[b.digest]
    assert ra["repository"] == rb["repository"] == "team/app"
    assert ra["last_tag"] == "v1" and ra["last_user_agent"].startswith("skopeo/")
    assert rb["last_tag"] is None and rb["last_user_agent"].startswith("curl/")  # pulled by digest
    for r in (ra, rb):
        assert t0 <= r["last_pull"] <= t1
    # distribution 2.8 sends a pull for a manifest HEAD too: it counts
    before = rb["pull_count"]
    curl_manifest(url, "team/app", "v2", method="HEAD")
    wait_until(lambda: by_digest(stack.rows())[b.digest]["pull_count"] > before, timeout=60, what="HEAD pull")
    assert by_digest(stack.rows())[b.digest]["last_tag"] == "v2"
    assert stack.metric("regkeeper_pull_events_stored_total", registry=NAME) >= 3
    assert stack.metric("regkeeper_pull_last_event_timestamp_seconds", registry=NAME) > 0
    metrics = requests.get(f"{stack.rx.url}/metrics", timeout=10).text
    assert "regkeeper_pull_events_received_total" in metrics


def test_regkeepers_own_scan_replication_and_backup_are_not_pulls(stack, tmp_path):
    url = stack.reg.url
    images.push_image(url, "team/app", "v1", seed=1)
    images.push_image(url, "team/lib", "v1", seed=2)
    stack.reg.clear_access_log()  # the pushes above: the test's own client
    src = RegistryClient(NAME, url, verify=False, retries=3, backoff=0.02)
    inv = scan(src)
    assert inv.stats["tags"] == 2
    dst_reg = RegistryServer(tmp_path / "dst")
    try:
        dst = RegistryClient("replica", dst_reg.url, verify=False, retries=3, backoff=0.02)
        rule = ReplicationRule.model_validate({"from": NAME, "to": ["replica"]})
        replicate_target(src, dst, rule, verify=True)
        assert images.list_tags(dst_reg.url, "team/app", verify=False) == ["v1"]
    finally:
        dst_reg.stop()
    B.backup(src, B.open_target(f"file://{tmp_path}/backups"))
    # the registry did send those manifest reads: each was excluded by user agent, none stored
    wait_until(
        lambda: stack.metric("regkeeper_pull_events_excluded_total", registry=NAME) >= 4,
        timeout=60,
        what="regkeeper's own manifest reads to arrive as excluded events",
    )
    time.sleep(1.0)
    assert stack.rows() == []
    agents = {e.user_agent for e in stack.reg.access_log() if "/manifests/" in e.path}
    assert agents and all(a.startswith("regkeeper/") for a in agents), agents


def test_receiver_down_then_up_loses_no_retried_event(any_store_stack):
    stack = any_store_stack
    url = stack.reg.url
    img = images.push_image(url, "team/app", "v1", seed=1)
    stack.stop_receiver()
    pulled_at = datetime.now(UTC)
    curl_manifest(url, "team/app", "v1")
    # distribution retries with its backoff while the endpoint is down (its log says so)
    wait_until(lambda: "retryingsink" in stack.reg.log_text().lower(), timeout=60, what="retry")
    time.sleep(2.0)
    assert stack.rows() == []
    restarted = datetime.now(UTC)
    stack.start_receiver()
    rows = by_digest(stack.wait_rows(1))
    r = rows[img.digest]
    # the stored time is the pull's (the registry's timestamp), not when it finally arrived
    assert pulled_at - timedelta(seconds=1) <= r["last_pull"] < restarted
    assert r["pull_count"] == 1


def test_token_mismatch_is_rejected_counted_and_not_logged(tmp_path, caplog):
    s = PullStack(tmp_path, registry_token="wrong-token-value").start()
    try:
        images.push_image(s.reg.url, "team/app", "v1", seed=1)
        with caplog.at_level(logging.DEBUG, logger="regkeeper"):
            curl_manifest(s.reg.url, "team/app", "v1")
            wait_until(
                lambda: s.metric("regkeeper_pull_events_rejected_total", registry=NAME, reason="token") >= 1,
                timeout=60,
                what="a rejected envelope",
            )
            r = requests.post(f"{s.rx.url}/events/{NAME}", data=b'{"events": []}', timeout=10)
            assert r.status_code == 401
            r = requests.post(
                f"{s.rx.url}/events/{NAME}",
                data=b'{"events": []}',
                headers={"Authorization": f"Bearer {s.token}"},
                timeout=10,
            )
            assert r.status_code == 200
            r = requests.post(f"{s.rx.url}/events/nope", data=b"{}", timeout=10)
            assert r.status_code == 404
        assert s.rows() == []
        assert "wrong-token-value" not in caplog.text and s.token not in caplog.text
        assert "token mismatch" in caplog.text
    finally:
        s.stop()


def test_a_multi_arch_pull_records_the_index_by_tag_and_the_platform_child_by_digest(stack, tmp_path):
    idx = images.push_index(stack.reg.url, "team/multi", "v1", seed="m")
    amd64 = next(c for c in idx.children if c.platform["architecture"] == "amd64")
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--override-os=linux",
            "--override-arch=amd64",
            f"docker://{stack.reg.host}/team/multi:v1",
            f"dir:{tmp_path}/out",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rows = by_digest(stack.wait_rows(2))
    assert rows[idx.digest]["last_tag"] == "v1"
    assert rows[amd64.digest]["last_tag"] is None  # the child is fetched by digest
    assert set(rows) == {idx.digest, amd64.digest}  # the arm64 child was not pulled
