"""capacity flow end to end: real registry storage, real Pushgateway, a local webhook receiver."""

import subprocess
import uuid

import requests

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


def metric(text: str, name: str, registry: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'registry="{registry}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def capacity_events(registry: str, timeout: float = 90.0) -> list[str]:
    import time

    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=60)
    deadline = time.monotonic() + timeout
    names: list[str] = []
    import datetime as dt

    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as c:
            page = c.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(since=since),
                    event=EventNameFilter(prefix=["regkeeper.capacity."]),
                    # this test's registry, named for it alone: the harness's server is shared by
                    # the session and other tests emit events for "local-registry"
                    resource=EventResourceFilter(id=[f"regkeeper.registry.{registry}"]),
                ),
                limit=50,
            )
        names = [e.event for e in sorted(page.events, key=lambda e: e.occurred)]
        if len(names) >= 3:
            break
        time.sleep(0.5)
    return names


def test_capacity_thresholds_metrics_forecast(registry_factory, pushgateway, webhook_receiver, tmp_path):
    from flows.capacity import capacity

    reg = registry_factory()
    name = f"cap-{uuid.uuid4().hex[:8]}"  # its events and metrics apart from other tests' (shared server)
    # realistic sizes: directory entries (which du -sb also counts) stay well under 1%
    images.push_many(
        reg.url,
        n_repos=3,
        tags_per_repo=2,
        prefix="cap/app",
        seed=7,
        base_layer_size=48 * 1024 * 1024,
        layer_size=8 * 1024 * 1024,
    )
    du = int(
        subprocess.run(
            ["du", "-sb", str(reg.root)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )

    def configure(capacity_bytes: int):
        return write_config(
            tmp_path / "regkeeper.yaml",
            [registry_entry(reg, name, capacityBytes=capacity_bytes)],
            capacity={
                "warn": 0.8,
                "critical": 0.9,
                "pushgateway": pushgateway.url,
                "notify": [{"webhook": webhook_receiver.url + "/hook", "format": "slack"}],
            },
        )

    cfg = configure(du * 4)  # ~25%: ok
    r1 = capacity(config_path=str(cfg))
    assert r1["status"] == "ok" and r1["summary"]["level"] == "ok"
    used = r1["summary"]["storage bytes"]
    assert abs(used - du) <= 0.01 * du
    assert webhook_receiver.received == []

    text = requests.get(pushgateway.url + "/metrics", timeout=10).text
    assert metric(text, "registry_storage_bytes_total", name) == used
    assert metric(text, "registry_storage_capacity_bytes", name) == du * 4
    assert metric(text, "registry_image_count", name) == 6
    assert abs(metric(text, "registry_storage_usage_ratio", name) - used / (du * 4)) < 1e-6
    assert "registry_pull_duration_seconds_count{" in text

    cfg = configure(int(used / 0.85))  # 85%: one warn
    capacity(config_path=str(cfg))
    capacity(config_path=str(cfg))  # still 85%: nothing new
    assert len(webhook_receiver.wait_for(1)) == 1
    assert "warn" in str(webhook_receiver.received[0].json).lower()

    cfg = configure(int(used / 0.95))  # 95%: one critical
    capacity(config_path=str(cfg))
    assert len(webhook_receiver.wait_for(2)) == 2
    assert "critical" in str(webhook_receiver.received[1].json).lower()

    cfg = configure(used * 2)  # 50%: one resolve
    r = capacity(config_path=str(cfg))
    assert len(webhook_receiver.wait_for(3)) == 3
    assert "resolved" in str(webhook_receiver.received[2].json).lower()
    capacity(config_path=str(cfg))
    assert len(webhook_receiver.received) == 3

    # history accumulates and the HTML report carries the usage chart
    hist = (tmp_path / "reports" / "capacity" / "history.csv").read_text().splitlines()
    assert len(hist) == 1 + 6
    html = open(r["files"]["html"]).read()
    assert "<svg" in html and "Usage over time" in html
    # the same transitions went out as Prefect events, for automations
    assert capacity_events(name) == [
        "regkeeper.capacity.warn",
        "regkeeper.capacity.critical",
        "regkeeper.capacity.resolved",
    ]

    # the cheap every-5-minutes variant: tag counts from catalog + tags/list, no inventory scan
    cheap = capacity(config_path=str(cfg), logical_usage=False)
    assert cheap["summary"]["images (tags)"] == 6 and cheap["summary"]["repositories"] == 3
    assert "manifests" not in cheap["summary"]
    # the webhook URL never appears in reports
    for p in (tmp_path / "reports").rglob("*"):
        if p.is_file():
            assert "/hook" not in p.read_text(errors="replace")
