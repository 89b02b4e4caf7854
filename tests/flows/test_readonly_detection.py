"""The capacity flow notices a registry that refuses writes (distribution's read-only mode, left
on by something that is not regkeeper): one alert through the notify targets (Slack-compatible
and Alertmanager), a metric, and the report says so; the alert resolves once writes work again.
A registry read-only inside a live regkeeper garbage-collect window is reported, not alerted."""

import requests

from regkeeper.config import load_config
from regkeeper.runstate import Lease, Owner, Window, lease_name, save_window
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


def metric(text: str, name: str, registry: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'registry="{registry}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def config(tmp_path, reg, pushgateway, webhook_receiver):
    return write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg)],
        capacity={
            "pushgateway": pushgateway.url,
            "notify": [
                {"webhook": webhook_receiver.url + "/hook", "format": "slack"},
                {"webhook": webhook_receiver.url + "/am", "format": "alertmanager"},
            ],
        },
    )


def test_registry_left_read_only_by_something_else(registry_factory, pushgateway, webhook_receiver, tmp_path):
    from flows.capacity import capacity

    pushgateway.wipe()
    reg = registry_factory()
    images.push_image(reg.url, "ro/app", "v1")
    cfg = config(tmp_path, reg, pushgateway, webhook_receiver)
    ok = capacity(config_path=str(cfg), logical_usage=False)
    assert ok["summary"]["takes writes"] == "yes" and webhook_receiver.received == []
    assert images.catalog(reg.url) == ["ro/app"]  # the write check leaves no repository

    reg.set_readonly(True)  # an operator forgot to switch it back
    r = capacity(config_path=str(cfg), logical_usage=False)
    assert r["status"] == "ok" and r["summary"]["takes writes"] == "no (read-only)"
    assert any(
        "READ-ONLY: the registry refuses writes" in n and "no live regkeeper run" in n for n in r["notes"]
    ), r["notes"]
    got = webhook_receiver.wait_for(2)
    slack = next(x for x in got if x.path == "/hook").json
    am = next(x for x in got if x.path.startswith("/am")).json
    assert "[READ-ONLY] registry local-registry refuses writes" in slack["text"]
    assert [(a["labels"]["alertname"], a["labels"]["severity"]) for a in am] == [
        ("RegistryReadOnly", "critical")
    ]
    assert am[0]["endsAt"] > am[0]["startsAt"]  # firing
    text = requests.get(pushgateway.url + "/metrics", timeout=10).text
    assert metric(text, "registry_read_only", "local-registry") == 1
    assert metric(text, "registry_read_only_unexpected", "local-registry") == 1

    capacity(config_path=str(cfg), logical_usage=False)  # still read-only: no second alert
    assert len(webhook_receiver.received) == 2

    reg.set_readonly(False)
    r = capacity(config_path=str(cfg), logical_usage=False)
    got = webhook_receiver.wait_for(4)
    slack = next(x for x in got[2:] if x.path == "/hook").json
    assert "[RESOLVED] registry local-registry takes writes again" in slack["text"]
    am = next(x for x in got[2:] if x.path.startswith("/am")).json
    assert am[0]["endsAt"] and "startsAt" not in am[0]  # ended
    text = requests.get(pushgateway.url + "/metrics", timeout=10).text
    assert metric(text, "registry_read_only", "local-registry") == 0


def test_read_only_inside_a_live_regkeeper_window_is_reported_not_alerted(
    registry_factory, pushgateway, webhook_receiver, tmp_path
):
    from flows.capacity import capacity

    pushgateway.wipe()
    reg = registry_factory()
    images.push_image(reg.url, "ro/app", "v1")
    cfg = config(tmp_path, reg, pushgateway, webhook_receiver)
    root = load_config(cfg).state_path()
    gc_run = Owner.current("gc", "run-gc-long")  # a live gc run (this process)
    lease = Lease(root, lease_name("local-registry"), gc_run, 60)
    assert lease.acquire().ok
    with lease.held():
        save_window(
            root,
            Window(
                registry="local-registry",
                owner=gc_run,
                started=gc_run.started,
                read_write=["true"],
                timeout=60,
                lease=lease.name,
                lease_token=lease.token,
                step="garbageCollect",
            ),
        )
        reg.set_readonly(True)
        r = capacity(config_path=str(cfg), logical_usage=False)
        assert r["summary"]["takes writes"] == "no (read-only)"
        assert (
            f"read-only for garbage-collect by run run-gc-long (pid {gc_run.pid} on host "
            f"{gc_run.host}) since {gc_run.started}" in r["notes"]
        )
        assert any("left alone" in n for n in r["notes"])  # recovery saw it and kept off
    assert webhook_receiver.received == []
    text = requests.get(pushgateway.url + "/metrics", timeout=10).text
    assert metric(text, "registry_read_only", "local-registry") == 1
    assert metric(text, "registry_read_only_unexpected", "local-registry") == 0
