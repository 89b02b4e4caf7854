"""Capacity against real parts: a directory tree and `du`, a real distribution registry's storage,
moto_server S3, a real Pushgateway, a loopback webhook receiver and a real Alertmanager."""

import math
import os
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from regkeeper import capacity as cap
from regkeeper import metrics as rkm
from regkeeper.config import parse_config
from regkeeper.errors import NotFoundError
from regkeeper.inventory import scan
from regkeeper.oci import RegistryClient
from tests.support.images import push_image, push_many
from tests.support.procs import ManagedProcess, free_port, wait_http_ready

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MiB = 1024 * 1024


# =========================================================================== filesystem vs du


def du_sb(path) -> int:
    out = subprocess.run(
        ["du", "-sb", str(path)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return int(out.split()[0])


def find_sizes(path, kind: str) -> int:
    """Sum of st_size of entries of a find -type (d, l) below path, the root included for d."""
    out = subprocess.run(
        ["find", str(path), "-type", kind, "-printf", "%s\n"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return sum(int(x) for x in out.split())


def regular_files_count(path) -> int:
    """Distinct inodes of regular files (du counts a hard-linked file once)."""
    out = subprocess.run(
        ["find", str(path), "-type", "f", "-printf", "%i\n"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return len(set(out.split()))


def make_tree(root: Path, files: int = 400, seed: int = 7) -> None:
    rng = random.Random(seed)
    dirs = [root]
    for i in range(40):
        d = rng.choice(dirs) / f"d{i}"
        d.mkdir()
        dirs.append(d)
    for i in range(files):
        size = rng.choice([0, 1, 100, 4095, 4096, 4097, 65536, rng.randint(1, 300_000)])
        (rng.choice(dirs) / f"f{i}.bin").write_bytes(rng.randbytes(size))
    big = root / "big.bin"
    big.write_bytes(rng.randbytes(16 * MiB))
    os.symlink(big, root / "d0" / "link-to-big")  # not followed, not counted
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(big, root / "d1" / "hardlink-to-big")  # counted once, like du
    os.mkfifo(root / "fifo")  # not a regular file


def test_filesystem_usage_matches_du(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    make_tree(root)
    u = cap.filesystem_usage(root)
    du = du_sb(root)
    # du -sb also counts directory entries and symlinks; without them it is exactly our number
    assert u.bytes_used == du - find_sizes(root, "d") - find_sizes(root, "l")
    assert abs(u.bytes_used - du) <= 0.01 * du
    assert u.files == regular_files_count(root)
    assert u.source == "filesystem" and u.root == str(root) and u.errors == 0
    # the filesystem figures are df's
    df = subprocess.run(
        ["df", "-B1", "--output=size,avail", str(root)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert u.fs_size_bytes == int(df[2])
    assert abs(u.fs_free_bytes - int(df[3])) <= 256 * MiB
    assert u.fs_used_bytes == u.fs_size_bytes - u.fs_free_bytes


def test_filesystem_usage_sees_changes_and_missing_root(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "a").write_bytes(b"x" * 1000)
    assert (cap.filesystem_usage(root).bytes_used, cap.filesystem_usage(root).files) == (1000, 1)
    (root / "sub").mkdir()
    (root / "sub" / "b").write_bytes(b"y" * 2345)
    assert cap.filesystem_usage(root).bytes_used == 3345
    shutil.rmtree(root / "sub")
    assert cap.filesystem_usage(root).bytes_used == 1000
    with pytest.raises(cap.CapacityError, match="storage path .*nope.*not a directory"):
        cap.filesystem_usage(tmp_path / "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_filesystem_usage_counts_unreadable_dirs(tmp_path):
    root = tmp_path / "t"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x").write_bytes(b"1" * 10)
    (root / "ok").write_bytes(b"1" * 5)
    os.chmod(root / "locked", 0)
    try:
        u = cap.filesystem_usage(root)
    finally:
        os.chmod(root / "locked", 0o755)
    assert (u.bytes_used, u.errors) == (5, 1)


def test_filesystem_usage_lists_each_directory_once(tmp_path, monkeypatch):
    """The walk's cost, counted rather than timed (a wall-clock bound fails on a loaded CI
    machine; bench/capacity_walk.py measures the time against du): one listing per directory."""
    import regkeeper.capacity.measure as measure

    root = tmp_path / "many"
    for i in range(20):
        d = root / f"{i:02d}"
        d.mkdir(parents=True)
        for j in range(100):
            with open(d / str(j), "wb") as f:
                f.write(b"z" * j)
    listed = []
    real = os.scandir
    monkeypatch.setattr(measure.os, "scandir", lambda p: listed.append(p) or real(p))
    u = cap.filesystem_usage(root)
    assert u.files == 2000 and u.bytes_used == 20 * sum(range(100))
    assert sorted(listed) == sorted([str(root)] + [str(root / f"{i:02d}") for i in range(20)])


# =========================================================================== real registry storage


BASE, OWN = 8 * MiB, 10 * MiB


@pytest.fixture(scope="module")
def filled_registry(tmp_path_factory):
    """An own registry (so nothing else writes to its storage) with 3 repositories x 2 tags,
    a base layer shared by all and a bigger own layer per image (data outweighs the registry's
    many directories, which du -sb counts at 4 KiB each)."""
    from tests.support.registry import RegistryServer

    srv = RegistryServer(tmp_path_factory.mktemp("capreg"))
    try:
        images = push_many(
            srv.url,
            repos=["cap/a", "cap/b", "cap/c"],
            tags_per_repo=2,
            base_layer_size=BASE,
            layer_size=OWN,
            seed=11,
            verify=False,
        )
        yield srv, images
    finally:
        srv.stop()


def test_registry_storage_usage_matches_du(filled_registry):
    srv, images = filled_registry
    u = cap.filesystem_usage(srv.root)
    du = du_sb(srv.root)
    assert u.bytes_used == du - find_sizes(srv.root, "d") - find_sizes(srv.root, "l")
    assert abs(u.bytes_used - du) <= 0.01 * du, (u.bytes_used, du)
    # the blob store holds each distinct blob once: 1 base + 6 own layers + configs + manifests
    distinct = {d for img in images for d in img.layer_digests + [img.config_digest, img.digest]}
    blob_files = list((srv.root / "docker/registry/v2/blobs").rglob("data"))
    assert len(blob_files) == len(distinct)
    assert u.bytes_used > BASE + 6 * OWN


def test_registry_logical_usage_and_counts_from_a_real_scan(filled_registry):
    srv, images = filled_registry
    with RegistryClient("capreg", srv.url, verify=False, retries=1) as client:
        inv = scan(client)
    df = cap.logical_usage(inv)
    assert sorted(df.repository) == ["cap/a", "cap/b", "cap/c"]
    assert (df.tags == 2).all() and (df.manifests == 2).all()
    base = BASE
    for row in df.itertuples():
        own = [i for i in images if i.repo == row.repository]
        assert row.shared_bytes == base  # the base layer is in all three
        assert row.unique_bytes == sum(i.size_total for i in own) - 2 * base
        assert row.total_bytes == row.unique_bytes + row.shared_bytes
    # deduplicated logical bytes == the bytes of the blob store's data files, exactly
    blob_bytes = sum(p.stat().st_size for p in (srv.root / "docker/registry/v2/blobs").rglob("data"))
    assert cap.deduplicated_bytes(inv) == blob_bytes
    assert cap.image_counts(inv) == (6, 6)


def test_pull_latency_against_real_registry(registry, unique_repo):
    img = push_image(registry.url, unique_repo, "v1", seed=3, verify=False)
    registry.clear_access_log()
    with RegistryClient("reg", registry.url, verify=False, retries=0) as client:
        secs = cap.measure_pull_latency(client, unique_repo, "v1")
        assert 0 < secs < 5
        log = [(e.method, e.path, e.status) for e in registry.access_log()]
        assert ("GET", f"/v2/{unique_repo}/manifests/v1", 200) in log
        assert ("GET", f"/v2/{unique_repo}/blobs/{img.config_digest}", 200) in log
        # no layer is downloaded: the probe stays small
        assert not any(p.endswith(d) for _, p, _ in log for d in img.layer_digests)
        with pytest.raises(NotFoundError):
            cap.measure_pull_latency(client, unique_repo, "missing")


# =========================================================================== S3 (moto_server)


def test_s3_usage_paginates_and_respects_prefix(moto_server, s3_bucket):
    s3 = moto_server.client()
    sizes = [random.Random(i).randint(0, 5000) for i in range(53)]
    for i, n in enumerate(sizes):
        s3.put_object(Bucket=s3_bucket, Key=f"registry/docker/registry/v2/blobs/{i:03d}/data", Body=b"a" * n)
    s3.put_object(Bucket=s3_bucket, Key="other/thing", Body=b"b" * 99999)
    moto_server.clear_request_log()
    u = cap.s3_usage(s3, s3_bucket, "registry/", page_size=10)
    assert (u.bytes_used, u.files) == (sum(sizes), 53)
    assert u.source == "s3" and u.root == f"s3://{s3_bucket}/registry/"
    assert u.fs_size_bytes is None and u.fs_free_bytes is None
    lists = [r for r in moto_server.request_log() if r.method == "GET" and r.path == f"/{s3_bucket}"]
    assert len(lists) == math.ceil(53 / 10)  # really paginated
    whole = cap.s3_usage(s3, s3_bucket)
    assert (whole.bytes_used, whole.files) == (sum(sizes) + 99999, 54)


def test_s3_usage_names_the_bucket_on_error(moto_server):
    with pytest.raises(
        cap.CapacityError, match=r"s3://no-such-bucket-cap/: listing failed: NoSuchBucket \(HTTP 404\)"
    ):
        cap.s3_usage(moto_server.client(), "no-such-bucket-cap")


def test_measure_storage_from_config_s3_registry(moto_server, s3_bucket, monkeypatch):
    """The config path: an S3 registry (seed keys) measured through storage.s3_client; no
    capacityBytes means no ratio, and the note says so."""
    s3 = moto_server.client()
    s3.put_object(Bucket=s3_bucket, Key="docker/registry/v2/x", Body=b"q" * 1234)
    monkeypatch.setenv("CAP_S3_KEY", moto_server.access_key)
    monkeypatch.setenv("CAP_S3_SECRET", moto_server.secret_key)
    cfg = parse_config(f"""
mirrorRepositories:
- name: s3-registry
  type: s3
  url: http://127.0.0.1:1
  endpoint: {moto_server.endpoint}
  accessKey: env:CAP_S3_KEY
  secretKey: env:CAP_S3_SECRET
  bucket: {s3_bucket}
""")
    u = cap.measure_storage(cfg.registry("s3-registry"))
    assert (u.bytes_used, u.files, u.source) == (1234, 1, "s3")
    capacity, src, note = cap.resolve_capacity(u, cfg.registry("s3-registry").capacity_bytes)
    assert capacity is None and "no usage ratio" in note


def test_s3_backed_registry_usage(registry_factory, moto_server, s3_bucket):
    """A real registry writing to moto S3: usage covers every byte pushed."""
    srv = registry_factory(storage="s3", s3=moto_server.s3_config(s3_bucket))
    imgs = [
        push_image(srv.url, "cap/s3", f"v{i}", seed=i, layers=[os.urandom(200_000)], verify=False)
        for i in range(3)
    ]
    u = cap.s3_usage(moto_server.client(), s3_bucket)
    pushed = sum(i.size_total for i in imgs)
    assert pushed <= u.bytes_used <= pushed + 64 * 1024  # + links and small metadata objects
    assert u.files >= 3 * 3


def test_measure_storage_directory_config(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "f").write_bytes(b"1" * 777)
    cfg = parse_config(f"""
mirrorRepositories:
- name: local
  url: http://127.0.0.1:5000
  storage: {{type: directory, path: {tmp_path}}}
  capacityBytes: 1Ki
- name: remote
  url: http://127.0.0.1:5001
""")
    u = cap.measure_storage(cfg.registry("local"))
    assert u.bytes_used == 777
    assert cap.resolve_capacity(u, cfg.registry("local").capacity_bytes) == (1024, "capacityBytes", None)
    assert cap.measure_storage(cfg.registry("remote")) is None


# =========================================================================== Pushgateway


def scrape(gw) -> list:
    return [s for f in text_string_to_metric_families(gw.metrics_text()) for s in f.samples]


def value(samples, name, **labels):
    got = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(got) <= 1, (name, labels, got)
    return got[0] if got else None


def test_pushgateway_push_and_scrape(pushgateway):
    pushgateway.wipe()
    m = rkm.RunMetrics("capacity", "local-registry")
    m.set_storage(800, 1000, files=4)
    m.set_image_count(12, manifests=10)
    for s in (0.004, 0.02, 0.03, 0.7):
        m.observe_pull(s)
    m.finish(True, now=1_800_000_000)
    m.push(pushgateway.url, timeout=5)
    s = scrape(pushgateway)
    lab = {"job": "regkeeper", "flow": "capacity", "registry": "local-registry"}
    assert value(s, "registry_storage_bytes_total", **lab) == 800
    assert value(s, "registry_storage_capacity_bytes", **lab) == 1000
    assert value(s, "registry_storage_usage_ratio", **lab) == pytest.approx(0.8)
    assert value(s, "registry_image_count", **lab) == 12
    assert value(s, "registry_manifest_count", **lab) == 10
    assert value(s, "registry_pull_duration_seconds_count", **lab) == 4
    assert value(s, "registry_pull_duration_seconds_bucket", le="0.05", **lab) == 3
    assert value(s, "regkeeper_last_success_timestamp_seconds", **lab) == 1_800_000_000
    assert value(s, "regkeeper_run_success", **lab) == 1
    # the group is the one we asked for
    assert value(s, "push_time_seconds", **lab) > 0


def test_failed_run_does_not_overwrite_last_success(pushgateway):
    pushgateway.wipe()
    gw = pushgateway.url
    lab = {"job": "regkeeper", "flow": "gc", "registry": "r1"}

    ok = rkm.RunMetrics("gc", "r1")
    ok.set_bytes_reclaimed(5000)
    ok.finish(True, now=1000)
    ok.push(gw)
    other = rkm.RunMetrics("expire", "r1")
    other.finish(True, now=1500)
    other.push(gw)

    bad = rkm.RunMetrics("gc", "r1")
    bad.set_items_failed(3)
    bad.finish(False, now=2000)
    bad.push(gw)
    s = scrape(pushgateway)
    assert value(s, "regkeeper_last_success_timestamp_seconds", **lab) == 1000  # kept
    assert value(s, "regkeeper_last_run_timestamp_seconds", **lab) == 2000  # replaced
    assert value(s, "regkeeper_run_success", **lab) == 0
    assert value(s, "regkeeper_items_failed", **lab) == 3
    assert value(s, "regkeeper_bytes_reclaimed", **lab) == 5000  # last known
    assert (
        value(s, "regkeeper_last_success_timestamp_seconds", job="regkeeper", flow="expire", registry="r1")
        == 1500
    )

    again = rkm.RunMetrics("gc", "r1")
    again.set_bytes_reclaimed(0)
    again.finish(True, now=3000)
    again.push(gw)
    s = scrape(pushgateway)
    assert value(s, "regkeeper_last_success_timestamp_seconds", **lab) == 3000
    assert value(s, "regkeeper_run_success", **lab) == 1
    assert value(s, "regkeeper_items_failed", **lab) == 0  # not stale
    assert value(s, "regkeeper_bytes_reclaimed", **lab) == 0


def test_a_plain_put_would_lose_last_success(pushgateway):
    """Why push() uses POST: the same failed run pushed with PUT erases the success time."""
    pushgateway.wipe()
    ok = rkm.RunMetrics("gc", "r2")
    ok.finish(True, now=1000)
    ok.push(pushgateway.url)
    bad = rkm.RunMetrics("gc", "r2")
    bad.finish(False, now=2000)
    push_to_gateway(
        pushgateway.url, job="regkeeper", registry=bad.collector, grouping_key=bad.grouping_key(), timeout=5
    )
    s = scrape(pushgateway)
    assert value(s, "regkeeper_last_success_timestamp_seconds", flow="gc", registry="r2") is None


def test_replication_metrics_and_delete_group(pushgateway):
    pushgateway.wipe()
    m = rkm.RunMetrics("replicate", "primary")
    m.set_items_replicated("eu", 7)
    m.set_replication_lag("eu", 2)
    m.finish(True)
    m.push(pushgateway.url)
    s = scrape(pushgateway)
    assert (
        value(
            s,
            "regkeeper_items_replicated",
            job="regkeeper",
            flow="replicate",
            registry="primary",
            target="eu",
        )
        == 7
    )
    assert value(s, "regkeeper_replication_lag_tags", source="primary", target="eu", flow="replicate") == 2
    rkm.delete_metrics(pushgateway.url, flow="replicate", registry="primary")
    assert value(scrape(pushgateway), "regkeeper_items_replicated", target="eu") is None


# =========================================================================== webhooks


def fill(root: Path, total: int) -> None:
    """Make the files under root add up to ``total`` bytes."""
    for p in root.iterdir():
        p.unlink()
    (root / "data").write_bytes(b"\0" * total)


def capacity_run(root, store, history, targets, now, capacity=1_000_000, **kw):
    usage = cap.filesystem_usage(root)
    chk = cap.check_capacity(
        "reg1",
        usage,
        capacity_bytes=capacity,
        thresholds=cap.Thresholds(),
        store=store,
        history=history,
        now=now,
    )
    deliveries = cap.notify_and_commit(chk, targets, store, timeout=5, **kw)
    return chk, deliveries


def test_webhook_delivery_once_per_crossing_escalation_and_resolve(tmp_path, webhook_receiver):
    root = tmp_path / "storage"
    root.mkdir()
    store = cap.StateStore(tmp_path / "reports" / "capacity")
    history = cap.UsageHistory(tmp_path / "reports" / "capacity" / "history.csv")
    slack_url = f"{webhook_receiver.url}/services/T000/B000/SECRETTOKEN"
    am_url = f"{webhook_receiver.url}/am"
    targets = [(slack_url, "slack"), (am_url, "alertmanager")]
    plan = [
        (500_000, None),
        (850_000, "warn"),
        (860_000, None),
        (870_000, None),
        (930_000, "critical"),
        (950_000, None),
        (500_000, "resolved"),
        (400_000, None),
    ]
    for i, (used, expect) in enumerate(plan):
        fill(root, used)
        before = len(webhook_receiver.received)
        chk, deliveries = capacity_run(root, store, history, targets, T0 + timedelta(minutes=5 * i))
        got = webhook_receiver.received[before:]
        assert chk.ratio == pytest.approx(used / 1_000_000)
        if expect is None:
            assert got == [] and deliveries == [], (used, got)
        else:
            assert len(got) == 2 and all(d.ok for d in deliveries)
            slack = next(r for r in got if r.path.startswith("/services/"))
            am = next(r for r in got if r.path == "/am/api/v2/alerts")
            assert slack.json["text"].startswith(f"[{expect.upper()}] registry reg1")
            sev = {e["labels"]["severity"]: e for e in am.json}
            if expect == "resolved":
                assert all("startsAt" not in e for e in am.json)
            else:
                firing = sev["warning" if expect == "warn" else "critical"]
                assert firing["startsAt"] == cap._iso(T0 + timedelta(minutes=5 * i))
        assert store.load("reg1").level == chk.state.level
    assert len(webhook_receiver.received) == 6  # 3 alerts x 2 targets, nothing else
    # the history has every run, the forecast saw it
    assert len(history.load("reg1")) == len(plan)
    assert chk.forecast is not None and chk.forecast.points_used == len(plan)


def test_webhook_retries_5xx_then_delivers_once(tmp_path, webhook_receiver):
    webhook_receiver.status = [503, 502]
    root = tmp_path / "s"
    root.mkdir()
    fill(root, 900_000)
    store = cap.StateStore(tmp_path)
    chk, deliveries = capacity_run(root, store, None, [(webhook_receiver.url + "/hook", "slack")], T0)
    assert chk.alert.level == "critical"
    assert [d.ok for d in deliveries] == [True] and deliveries[0].status == 200
    assert len(webhook_receiver.received) == 3  # two refused attempts, one accepted
    assert store.load("reg1").level == "critical"


def test_undelivered_alert_is_not_committed_and_is_sent_again(tmp_path, webhook_receiver, caplog):
    webhook_receiver.status = 500
    root = tmp_path / "s"
    root.mkdir()
    fill(root, 850_000)
    store = cap.StateStore(tmp_path)
    url = webhook_receiver.url + "/services/T1/B1/SECRETTOKEN"
    chk, deliveries = capacity_run(root, store, None, [(url, "slack")], T0, retries=1)
    assert [d.ok for d in deliveries] == [False]
    assert "HTTP 500" in deliveries[0].error and "SECRETTOKEN" not in deliveries[0].error
    assert deliveries[0].target == webhook_receiver.url + "/…"
    assert "SECRETTOKEN" not in caplog.text
    assert not store.path("reg1").exists()  # not committed
    webhook_receiver.status = 200
    webhook_receiver.clear()
    chk, deliveries = capacity_run(root, store, None, [(url, "slack")], T0 + timedelta(minutes=5))
    assert chk.alert is not None and chk.alert.level == "warn" and deliveries[0].ok
    assert len(webhook_receiver.received) == 1
    chk, deliveries = capacity_run(root, store, None, [(url, "slack")], T0 + timedelta(minutes=10))
    assert chk.alert is None and len(webhook_receiver.received) == 1


def test_notify_targets_from_config(tmp_path, webhook_receiver, monkeypatch):
    monkeypatch.setenv("CAP_ALERT_WEBHOOK", webhook_receiver.url + "/services/X/Y/Z")
    cfg = parse_config("""
mirrorRepositories:
- {name: reg1, url: http://127.0.0.1:5000}
capacity: {warn: 0.8, critical: 0.9, notify: [{webhook: env:CAP_ALERT_WEBHOOK}]}
""")
    root = tmp_path / "s"
    root.mkdir()
    fill(root, 950_000)
    chk, deliveries = capacity_run(root, cap.StateStore(tmp_path), None, cfg.capacity.notify, T0)
    assert [d.fmt for d in deliveries] == ["slack"] and deliveries[0].ok
    assert webhook_receiver.received[0].path == "/services/X/Y/Z"


# --------------------------------------------------------------------------- real Alertmanager

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


@pytest.fixture
def alertmanager(tmp_path):
    if not os.access(ALERTMANAGER_BIN, os.X_OK):
        pytest.skip("Debian package prometheus-alertmanager not installed")
    port = free_port()
    conf = tmp_path / "am.yml"
    conf.write_text("route: {receiver: devnull, group_wait: 1h}\nreceivers: [{name: devnull}]\n")
    proc = ManagedProcess(
        [
            ALERTMANAGER_BIN,
            f"--config.file={conf}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        log_path=tmp_path / "am.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:  # ready: 200 from this process's own socket (the shared helper; 60 s on a loaded machine)
        wait_http_ready(
            proc, "alertmanager", f"{url}/-/ready", lambda st: st == 200, timeout=60, interval=0.1
        )
        yield url
    finally:
        proc.stop()


def am_alerts(url):
    r = requests.get(
        f"{url}/api/v2/alerts", params={"filter": 'alertname="RegistryStorageUsage"'}, timeout=5, verify=False
    )
    r.raise_for_status()
    return {a["labels"]["severity"]: a for a in r.json() if a["status"]["state"] == "active"}


def test_alertmanager_accepts_firing_escalation_and_resolve(alertmanager):
    # alert times a little in the past, so an endsAt of "now" has already passed when we look
    now = datetime.now(UTC) - timedelta(seconds=30)
    state = None
    seq = [(0.85, {"warning"}), (0.95, {"critical"}), (0.85, {"warning"}), (0.1, set())]
    for i, (ratio, active) in enumerate(seq):
        state, alert = cap.evaluate(
            ratio,
            cap.Thresholds(),
            state,
            registry="reg-am",
            now=now + timedelta(seconds=i),
            used_bytes=int(ratio * 1000),
            capacity_bytes=1000,
        )
        assert alert is not None
        assert cap.send_webhook(alertmanager, alert, "alertmanager", timeout=5, verify=False) == 200
        got = am_alerts(alertmanager)
        assert set(got) == active, (ratio, got)
        for a in got.values():
            assert a["labels"]["registry"] == "reg-am"
            assert a["annotations"]["summary"] == alert.message
