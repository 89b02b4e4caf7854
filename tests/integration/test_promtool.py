"""The monitoring kit (deployments/monitoring): alert rules checked and unit-tested with the real
promtool, the Grafana dashboard's queries parsed by promtool, the Prefect automation validated
with Prefect's own schema and matched against the events regkeeper emits."""

import json
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from regkeeper import capacity as cap
from regkeeper.metrics import SPEC
from regkeeper.pulls.receiver import RECEIVER_METRICS

KIT = Path(__file__).resolve().parents[2] / "deployments" / "monitoring"
RULES = KIT / "prometheus-rules.yml"
RULES_TEST = KIT / "prometheus-rules.test.yml"
DASHBOARD = KIT / "grafana-dashboard.json"
AUTOMATION = KIT / "prefect-automation.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

METRIC_RE = re.compile(r"\b((?:registry|regkeeper)_[a-z_]+)")


@pytest.fixture(scope="module")
def promtool():
    if not shutil.which(PROMTOOL):
        pytest.fail("promtool is missing: install the Debian package 'prometheus'", pytrace=False)
    return PROMTOOL


def run_promtool(promtool, *args, cwd=KIT):
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_ok(proc):
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False
        )


def metric_names(expr: str) -> set[str]:
    out = set()
    for m in METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_count", "_sum"):
            if m.endswith(suffix) and m[: -len(suffix)] in SPEC:
                m = m[: -len(suffix)]
        out.add(m)
    return out


# =========================================================================== rules


def test_promtool_check_rules(promtool):
    proc = run_promtool(promtool, "check", "rules", str(RULES))
    assert_ok(proc)
    assert "SUCCESS: 8 rules found" in proc.stdout


def test_promtool_test_rules(promtool):
    proc = run_promtool(promtool, "test", "rules", str(RULES_TEST))
    assert_ok(proc)
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    "old,new",
    [
        (">= 0.80 < 0.90", ">= 0.70 < 0.90"),  # warn threshold moved
        ("> 26 * 3600", "> 30 * 3600"),  # gc freshness window moved
        ("for: 1h", "for: 2h"),  # replication lag patience moved
    ],
)
def test_rule_tests_catch_a_changed_rule(promtool, tmp_path, old, new):
    """The promtool tests have teeth: change a rule and they fail."""
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    proc = run_promtool(promtool, "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout


def test_rules_cover_required_alerts_and_known_metrics():
    doc = yaml.safe_load(RULES.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert {
        "RegistryStorageWarning",
        "RegistryStorageCritical",
        "RegkeeperGcNotSucceeded",
        "RegkeeperReplicationLag",
        "RegkeeperRunFailed",
    } <= set(rules)
    assert rules["RegistryStorageWarning"]["for"] == "5m"
    assert "0.90" in rules["RegistryStorageCritical"]["expr"]
    assert "absent(" in rules["RegkeeperGcNotSucceeded"]["expr"]
    assert rules["RegkeeperReplicationLag"]["for"] == "1h"
    for r in rules.values():
        names = metric_names(r["expr"])
        known = set(SPEC) | RECEIVER_METRICS  # pushed by runs, or scraped from the pull receiver
        assert names and names <= known, (r["alert"], names - known)
        assert r["labels"]["severity"] in ("warning", "critical")
    # every alert has a firing case in the promtool tests
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert fired == set(rules) and quiet == set(rules)


# =========================================================================== Grafana


def dashboard_exprs(d):
    for p in d["panels"]:
        for t in p.get("targets", []):
            yield p, t["expr"]


def test_grafana_dashboard_structure():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "registry"} <= names
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(d)))
    assert used <= set(SPEC), used - set(SPEC)
    assert {
        "registry_storage_bytes_total",
        "registry_storage_usage_ratio",
        "registry_image_count",
        "registry_pull_duration_seconds",
        "regkeeper_bytes_reclaimed",
        "regkeeper_last_success_timestamp_seconds",
    } <= used
    # pull latency p50 and p95 from the histogram
    exprs = [e for _, e in dashboard_exprs(d)]
    assert any("histogram_quantile(0.50" in e and "registry_pull_duration_seconds_bucket" in e for e in exprs)
    assert any("histogram_quantile(0.95" in e and "registry_pull_duration_seconds_bucket" in e for e in exprs)
    # the ratio panels show the 80% / 90% thresholds
    ratio_panels = [p for p, e in dashboard_exprs(d) if "registry_storage_usage_ratio" in e]
    assert ratio_panels
    for p in ratio_panels:
        steps = [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert steps == [None, 0.8, 0.9]


def test_grafana_queries_are_valid_promql(promtool, tmp_path):
    """Each dashboard query, with Grafana's variables filled in, parses as PromQL (promtool
    checks it as a recording rule)."""
    d = json.loads(DASHBOARD.read_text())
    rules = []
    for i, (p, e) in enumerate(dashboard_exprs(d)):
        expr = e.replace("$registry", ".*").replace("$__rate_interval", "5m")
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel{p['id']}:q{i}", "expr": expr})
    f = tmp_path / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run_promtool(promtool, "check", "rules", str(f)))
    # and a broken query would be caught
    f.write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "sum by (le (x)"}]}]})
    )
    assert run_promtool(promtool, "check", "rules", str(f)).returncode != 0


# =========================================================================== Prefect automation


def _events():
    out = {}
    for seq in ([0.85], [0.95], [0.95, 0.1]):
        state = None
        for r in seq:
            state, alert = cap.evaluate(r, cap.Thresholds(), state, registry="local-registry")
        out[alert.level] = cap.event_payload(alert)
    return out


def test_prefect_automation_validates_and_matches_capacity_events():
    from prefect.events.schemas.automations import AutomationCore as ClientAutomation
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomation
    from prefect.server.events.schemas.events import ReceivedEvent

    from app.alerts import EVENTS, automation_spec
    from regkeeper.capacity.readonly import ReadOnlyAlert
    from regkeeper.capacity.readonly import event_payload as readonly_payload

    doc = yaml.safe_load(AUTOMATION.read_text())
    autos = doc["automations"]  # the shape `prefect automation create --from-file` reads
    assert len(autos) == 1
    # the file is what `regkeeper alerts install` creates, but for the block id it fills in
    assert autos[0] == automation_spec(autos[0]["actions"][0]["block_document_id"])
    a = ClientAutomation.model_validate(autos[0])  # what the CLI validates with
    assert a.actions[0].type == "send-notification"
    assert a.trigger.expect == set(EVENTS)
    server = ServerAutomation.model_validate(autos[0])
    now = datetime.now(UTC)

    def received(name, resource, payload):
        return ReceivedEvent(occurred=now, event=name, resource=resource, payload=payload, id=uuid.uuid4())

    events = _events()
    assert set(events) == {"warn", "critical", "resolved"}
    for kind in ("read-only", "recovery-failed", "recovered", "writable"):
        events[kind] = readonly_payload(ReadOnlyAlert("local-registry", kind, f"{kind} message"))
    for name, resource, payload in events.values():
        assert server.trigger.covers(received(name, resource, payload)), name
    # unrelated events do not trigger it
    name, resource, payload = events["warn"]
    assert not server.trigger.covers(received("regkeeper.gc.completed", resource, payload))
    assert not server.trigger.covers(received(name, {"prefect.resource.id": "prefect.flow-run.x"}, payload))
