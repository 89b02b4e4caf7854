"""`regkeeper alerts install` against the harness's real Prefect server: it creates the webhook
block (the URL only in the block's secrets, never printed) and the automation, idempotently;
then a real capacity run over the warn threshold and a read-only event make the server's
automation call the webhook (a real HTTP receiver on loopback)."""

import time
import uuid

import pytest

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


def wait_for_posts(receiver, n: int, deadline_s: float = 90.0) -> list:
    """The server's triggers and actions services run asynchronously: poll until ``n`` POSTs
    arrived or the deadline passes (no fixed sleep decides the outcome)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if len(receiver.received) >= n:
            return list(receiver.received)
        time.sleep(0.25)
    raise AssertionError(f"the automation called the webhook {len(receiver.received)} time(s), expected {n}")


@pytest.fixture
def installed(registry_factory, webhook_receiver, tmp_path, monkeypatch, capsys):
    from prefect.client.orchestration import get_client

    from app.cli import main

    reg = registry_factory()
    images.push_many(reg.url, n_repos=1, tags_per_repo=2, prefix="alerts/app", seed=3, verify=False)
    name = f"reg-{uuid.uuid4().hex[:6]}"
    secret_path = f"/hook/{uuid.uuid4().hex}"
    monkeypatch.setenv("RK_TEST_AUTOMATION_HOOK", webhook_receiver.url + secret_path)
    auto_name = f"regkeeper capacity alerts {name}"
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, name=name, capacityBytes=10**9)],
        capacity={
            "writeCheck": False,
            "automation": {
                "webhook": "env:RK_TEST_AUTOMATION_HOOK",
                "block": f"alerts-{name}",
                "name": auto_name,
            },
        },
    )
    capsys.readouterr()
    assert main(["alerts", "install", "--config", str(cfg)]) == 0
    first = capsys.readouterr()
    assert main(["alerts", "install", "--config", str(cfg)]) == 0  # idempotent: updated in place
    second = capsys.readouterr()
    yield reg, name, cfg, auto_name, secret_path, first.out + first.err, second.out + second.err
    with get_client(sync_client=True) as c:  # leave nothing that would call a stopped receiver
        for a in c.read_automations_by_name(auto_name):
            c.delete_automation(a.id)
        doc = c.read_block_document_by_name(f"alerts-{name}", "custom-webhook")
        c.delete_block_document(doc.id)


def test_alerts_install_then_a_threshold_crossing_calls_the_webhook(installed, webhook_receiver):
    from prefect.client.orchestration import get_client

    from app.alerts import EVENTS
    from flows.capacity import capacity

    reg, name, cfg, auto_name, secret_path, first, second = installed
    assert "automation '" + auto_name + "' created" in first and "updated" in second
    assert secret_path not in first + second and "RK_TEST" not in first  # the URL is never printed
    assert f"posts to {webhook_receiver.url}/…" in first
    with get_client(sync_client=True) as c:
        (auto,) = c.read_automations_by_name(auto_name)  # one, updated in place
        assert set(auto.trigger.expect) == set(EVENTS) and "regkeeper.capacity.warn" in EVENTS
        assert "regkeeper.readonly.read-only" in EVENTS
        doc = c.read_block_document_by_name(f"alerts-{name}", "custom-webhook", include_secrets=False)
        assert doc.data["url"] == "{{webhook_url}}"  # the URL is only in the block's secrets,
        assert secret_path not in str(doc.data)  # which the UI and the API show obfuscated
    assert webhook_receiver.received == []

    # a real capacity run over the warn threshold: the flow emits regkeeper.capacity.warn
    used = capacity(config_path=str(cfg), logical_usage=False)["summary"]["storage bytes"]
    write_config(
        cfg,
        [registry_entry(reg, name=name, capacityBytes=int(used / 0.85))],
        capacity={
            "writeCheck": False,
            "automation": {
                "webhook": "env:RK_TEST_AUTOMATION_HOOK",
                "block": f"alerts-{name}",
                "name": auto_name,
            },
        },
    )
    out = capacity(config_path=str(cfg), logical_usage=False)
    assert out["summary"]["level"] == "warn"
    (post,) = wait_for_posts(webhook_receiver, 1)
    assert post.path == secret_path
    text = post.json["text"]
    assert f"regkeeper: regkeeper.capacity.warn on registry {name}" in text
    assert f"[WARN] registry {name}: storage usage 85" in text

    # a registry that refuses writes: the read-only event reaches the same webhook
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from regkeeper.capacity.readonly import ReadOnlyAlert, event_payload

    event, resource, payload = event_payload(
        ReadOnlyAlert(name, "read-only", f"[READ-ONLY] registry {name} refuses writes")
    )
    emit_event(event=event, resource=resource, payload=payload)
    EventsWorker.drain_all(timeout=60)
    posts = wait_for_posts(webhook_receiver, 2)
    assert f"regkeeper.readonly.read-only on registry {name}" in posts[1].json["text"]
    assert f"[READ-ONLY] registry {name} refuses writes" in posts[1].json["text"]


def test_alerts_install_needs_a_webhook_and_a_server(tmp_path, registry, capsys, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from app.cli import main

    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(registry)])
    assert main(["alerts", "install", "--config", str(cfg)]) == 2
    assert "capacity.automation.webhook" in capsys.readouterr().err
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["alerts", "install", "--config", str(cfg)]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err
