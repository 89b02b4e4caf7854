"""Unit tests for regkeeper.capacity and regkeeper.metrics (pure: no processes, no Prefect)."""

import json
import logging
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from regkeeper import capacity as cap
from regkeeper import metrics as rkm
from regkeeper.capacity import state as cap_state
from regkeeper.models import Descriptor, Inventory, ManifestInfo, RepoInventory
from regkeeper.util import redact_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GiB = 1024**3


# =========================================================================== thresholds / state machine


def run_sequence(ratios, thresholds=cap.Thresholds(), **kw):
    """Feed ratios through evaluate(); return (final state, [(ratio, alert)] for every alert)."""
    state = None
    alerts = []
    for i, r in enumerate(ratios):
        state, alert = cap.evaluate(
            r, thresholds, state, registry="reg", now=T0 + timedelta(minutes=5 * i), **kw
        )
        if alert is not None:
            alerts.append((r, alert))
    return state, alerts


@pytest.mark.parametrize(
    "ratio,level",
    [
        (0.0, "ok"),
        (0.799, "ok"),
        (0.80, "warn"),
        (0.85, "warn"),
        (0.8999, "warn"),
        (0.90, "critical"),
        (1.2, "critical"),
    ],
)
def test_classify(ratio, level):
    assert cap.classify(ratio, cap.Thresholds()) == level


def test_one_alert_per_crossing_escalation_deescalation_and_resolve():
    ratios = [0.50, 0.70, 0.81, 0.83, 0.85, 0.92, 0.95, 0.93, 0.89, 0.87, 0.85, 0.79, 0.77, 0.50, 0.50]
    state, alerts = run_sequence(ratios)
    got = [(r, a.level, a.previous_level, a.kind) for r, a in alerts]
    assert got == [
        (0.81, "warn", "ok", "crossing"),
        (0.92, "critical", "warn", "escalation"),
        (0.87, "warn", "critical", "de-escalation"),  # 0.89 is inside critical's hysteresis band
        (0.77, "resolved", "warn", "resolved"),  # 0.79 is inside warn's hysteresis band
    ]
    assert state.level == "ok"
    assert state.last_alert_level == "resolved"


def test_ok_to_critical_is_one_alert_and_critical_to_ok_one_resolve():
    _, alerts = run_sequence([0.5, 0.95, 0.97, 0.99, 0.3, 0.3])
    assert [(a.level, a.previous_level) for _, a in alerts] == [("critical", "ok"), ("resolved", "critical")]


def test_no_repeat_while_level_stays():
    _, alerts = run_sequence([0.85] * 50)
    assert len(alerts) == 1 and alerts[0][1].level == "warn"


def test_hysteresis_prevents_flapping_and_zero_hysteresis_does_not():
    flapping = [0.81, 0.79, 0.81, 0.795, 0.805, 0.79] * 3
    _, alerts = run_sequence(flapping)
    assert len(alerts) == 1
    _, alerts0 = run_sequence(flapping, cap.Thresholds(hysteresis=0))
    assert len(alerts0) == len(flapping)  # every step crosses 0.80 either way
    assert [a.level for _, a in alerts0[:2]] == ["warn", "resolved"]


@pytest.mark.parametrize(
    "previous,ratio,level",
    [
        ("critical", 0.88, "critical"),
        ("critical", 0.8799, "warn"),
        ("critical", 0.7801, "warn"),
        ("critical", 0.7799, "ok"),
        ("warn", 0.78, "warn"),
        ("warn", 0.7799, "ok"),
        ("warn", 0.90, "critical"),
        ("ok", 0.7999, "ok"),
        ("ok", 0.80, "warn"),
        ("ok", 0.90, "critical"),
    ],
)
def test_hysteresis_boundaries(previous, ratio, level):
    assert cap.next_level(ratio, cap.Thresholds(hysteresis=0.02), previous) == level


def test_ratio_none_changes_nothing():
    state, alert = cap.evaluate(0.85, cap.Thresholds(), None, registry="s3reg", now=T0)
    assert alert is not None
    state2, alert2 = cap.evaluate(None, cap.Thresholds(), state, now=T0 + timedelta(minutes=5))
    assert alert2 is None
    assert state2.level == "warn" and state2.ratio == state.ratio and state2.since == state.since
    # nan is treated as no ratio too
    _, alert3 = cap.evaluate(float("nan"), cap.Thresholds(), state)
    assert alert3 is None


def test_reassert_after_repeats_only_when_old_enough():
    t = cap.Thresholds()
    s, a = cap.evaluate(0.85, t, None, registry="r", now=T0, reassert_after=timedelta(hours=12))
    assert a.level == "warn" and not a.repeat
    s, a = cap.evaluate(0.85, t, s, now=T0 + timedelta(hours=11), reassert_after=timedelta(hours=12))
    assert a is None
    s, a = cap.evaluate(0.85, t, s, now=T0 + timedelta(hours=12), reassert_after=timedelta(hours=12))
    assert a is not None and a.repeat and a.kind == "repeat" and a.level == "warn"
    s, a = cap.evaluate(0.85, t, s, now=T0 + timedelta(hours=13), reassert_after=timedelta(hours=12))
    assert a is None
    # ok never reasserts
    s, a = cap.evaluate(0.1, t, s, now=T0 + timedelta(hours=14), reassert_after=timedelta(hours=12))
    assert a.level == "resolved"
    s, a = cap.evaluate(0.1, t, s, now=T0 + timedelta(days=3), reassert_after=timedelta(hours=12))
    assert a is None


def test_alert_carries_numbers_and_message():
    s, a = cap.evaluate(
        0.91,
        cap.Thresholds(),
        None,
        registry="local-registry",
        used_bytes=455 * GiB,
        capacity_bytes=500 * GiB,
        days_to_full=6.25,
        now=T0,
    )
    assert (a.registry, a.level, a.previous_level, a.used_bytes, a.capacity_bytes, a.days_to_full) == (
        "local-registry",
        "critical",
        "ok",
        455 * GiB,
        500 * GiB,
        6.25,
    )
    assert a.message.startswith(
        "[CRITICAL] registry local-registry: storage usage 91.0% (455.0 GiB of 500.0 GiB)"
    )
    assert "6.2 days" in a.message or "6.3 days" in a.message
    assert a.at == T0 and s.since == "2026-01-01T00:00:00Z"


def test_thresholds_validation():
    with pytest.raises(ValueError, match="warn"):
        cap.Thresholds(warn=0.9, critical=0.8)
    with pytest.raises(ValueError, match="hysteresis"):
        cap.Thresholds(hysteresis=-0.1)
    with pytest.raises(ValueError):
        cap.evaluate(0.5, cap.Thresholds(), None)  # no registry


def test_thresholds_from_config():
    from regkeeper.config import CapacityConfig

    t = cap.Thresholds.from_config(CapacityConfig(warn=0.7, critical=0.85))
    assert (t.warn, t.critical) == (0.7, 0.85)
    assert cap.Thresholds.from_config(None) == cap.Thresholds()


# --------------------------------------------------------------------------- state store


def test_state_store_roundtrip_atomic_and_corrupt(tmp_path, caplog):
    store = cap.StateStore(tmp_path / "capacity")
    assert store.load("r1").level == "ok"  # missing file: ok
    s, _ = cap.evaluate(0.93, cap.Thresholds(), store.load("r1"), now=T0)
    p = store.save(s)
    assert p.name == "state-r1.json"
    assert sorted(x.name for x in p.parent.iterdir()) == ["state-r1.json"]  # no temp file left
    back = store.load("r1")
    assert back == s and back.level == "critical" and back.ratio == 0.93
    assert json.loads(p.read_text())["version"] == 1
    # another registry is independent
    assert store.load("r2").level == "ok"
    # a corrupt file degrades to "ok" with a warning, not a crash
    p.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert store.load("r1").level == "ok"
    assert "unreadable" in caplog.text
    p.write_text(json.dumps({"level": "bogus"}))
    assert store.load("r1").level == "ok"
    with pytest.raises(ValueError):
        store.path("../evil")


def test_state_save_failure_keeps_old_file(tmp_path, monkeypatch):
    store = cap.StateStore(tmp_path)
    s1, _ = cap.evaluate(0.85, cap.Thresholds(), None, registry="r", now=T0)
    store.save(s1)
    s2, _ = cap.evaluate(0.95, cap.Thresholds(), s1, now=T0)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(cap_state.os, "replace", boom)
    with pytest.raises(OSError):
        store.save(s2)
    monkeypatch.undo()
    assert store.load("r").level == "warn"
    assert [x.name for x in tmp_path.iterdir()] == ["state-r.json"]


# =========================================================================== payloads


def _alert(level_seq):
    _, alerts = run_sequence(level_seq)
    return alerts[-1][1]


def test_slack_payload_shape():
    a = _alert([0.85])
    p = cap.slack_payload(a)
    assert p["text"] == a.message and "[WARN]" in p["text"]
    att = p["attachments"][0]
    assert att["color"] == "#f2c744"
    assert {f["title"] for f in att["fields"]} >= {"Registry", "Level", "Usage"}
    assert json.loads(json.dumps(p)) == p
    assert cap.slack_payload(_alert([0.95]))["attachments"][0]["color"] == "#d00000"
    assert cap.slack_payload(_alert([0.95, 0.1]))["attachments"][0]["color"] == "#2eb886"


def _by_severity(payload):
    return {e["labels"]["severity"]: e for e in payload}


def test_alertmanager_payload_firing_escalation_and_resolve():
    warn = _alert([0.85])
    p = cap.alertmanager_payload(warn, firing_ttl=timedelta(hours=24))
    assert isinstance(p, list) and len(p) == 2
    by = _by_severity(p)
    for e in p:
        assert e["labels"]["alertname"] == "RegistryStorageUsage"
        assert e["labels"]["registry"] == "reg"
        assert e["annotations"]["summary"] == warn.message
    now = cap._iso(warn.at)
    assert by["warning"]["startsAt"] == now
    assert by["warning"]["endsAt"] == cap._iso(warn.at + timedelta(hours=24))
    assert by["critical"]["endsAt"] == now and "startsAt" not in by["critical"]

    crit = _alert([0.85, 0.95])
    by = _by_severity(cap.alertmanager_payload(crit))
    assert "startsAt" in by["critical"] and by["critical"]["endsAt"] > by["critical"]["startsAt"]
    assert by["warning"]["endsAt"] == cap._iso(crit.at)  # warning ended by the escalation

    res = _alert([0.85, 0.95, 0.1])
    p = cap.alertmanager_payload(res)
    assert all(e["endsAt"] == cap._iso(res.at) and "startsAt" not in e for e in p)
    assert all(e["endsAt"].endswith("Z") for e in p)
    assert json.loads(json.dumps(p)) == p


def test_event_payload_names_and_resource():
    for seq, name in (
        ([0.85], "regkeeper.capacity.warn"),
        ([0.95], "regkeeper.capacity.critical"),
        ([0.95, 0.1], "regkeeper.capacity.resolved"),
        ([0.95, 0.85], "regkeeper.capacity.warn"),
    ):
        a = _alert(seq)
        ev, res, payload = cap.event_payload(a)
        assert ev == name
        assert res["prefect.resource.id"] == "regkeeper.registry.reg"
        assert payload["level"] == a.level and payload["previous_level"] == a.previous_level
        assert payload["message"] == a.message
        json.dumps(payload)


def test_send_webhook_unknown_format():
    with pytest.raises(ValueError, match="format"):
        cap.send_webhook("http://127.0.0.1:9/x", _alert([0.85]), fmt="teams")


def test_alertmanager_url():
    assert cap.alertmanager_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert cap.alertmanager_url("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert cap.alertmanager_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


# --------------------------------------------------------------------------- redaction

SECRET_URL_PATH = "/services/T0SECRET/B0SECRET/XoXoSECRETTOKEN"


def test_redact_url():
    assert redact_url("https://hooks.slack.com" + SECRET_URL_PATH) == "https://hooks.slack.com/…"
    assert redact_url("https://user:pw@am.example:9093/api?token=x") == "https://am.example:9093/…"
    assert redact_url("http://127.0.0.1:9091") == "http://127.0.0.1:9091"


def test_webhook_error_never_shows_url_secret(caplog, dead_port):
    url = f"http://user:hunter2@127.0.0.1:{dead_port}{SECRET_URL_PATH}"
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(cap.NotifyError) as ei:
            cap.send_webhook(url, _alert([0.85]), "slack", timeout=2, retries=0)
    msg = str(ei.value)
    assert "SECRET" not in msg and "hunter2" not in msg
    assert "http://127.0.0.1:" in msg and "/…" in msg and "ConnectionError" in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert "SECRET" not in caplog.text and "hunter2" not in caplog.text


def test_metrics_push_error_never_shows_credentials(dead_port):
    m = rkm.RunMetrics("gc", "r1")
    m.finish(True)
    with pytest.raises(rkm.MetricsPushError) as ei:
        m.push(f"http://admin:s3cr3t@127.0.0.1:{dead_port}", timeout=2, retries=0)
    assert "s3cr3t" not in str(ei.value) and "admin" not in str(ei.value)
    assert "pushgateway http://127.0.0.1:" in str(ei.value)
    with pytest.raises(rkm.MetricsPushError, match="capacity.pushgateway"):
        rkm.push_metrics("", m.collector, flow="gc", registry="r1")


# =========================================================================== forecast


def linear_history(
    days=14, per_hour=1, start=100 * GiB, per_day=2 * GiB, registry="reg", capacity=500 * GiB, noise=0.0
):
    rows = []
    n = days * 24 * per_hour
    for i in range(n + 1):
        t = T0 + timedelta(hours=i / per_hour)
        d = (t - T0).total_seconds() / 86400
        wobble = noise * math.sin(i * 1.7) * GiB
        rows.append(
            {
                "timestamp": t,
                "registry": registry,
                "bytes_used": int(start + per_day * d + wobble),
                "capacity_bytes": capacity,
            }
        )
    return pd.DataFrame(rows)


def test_forecast_linear_within_one_percent():
    df = linear_history()
    f = cap.forecast(df, 500 * GiB)
    current = 100 * GiB + 14 * 2 * GiB
    assert f.method == "linear-least-squares" and f.reason is None
    assert f.points_used == 14 * 24 + 1
    assert f.slope_bytes_per_day == pytest.approx(2 * GiB, rel=0.01)
    assert f.days_to_warn == pytest.approx((400 * GiB - current) / (2 * GiB), rel=0.01)  # 136
    assert f.days_to_critical == pytest.approx((450 * GiB - current) / (2 * GiB), rel=0.01)  # 161
    assert f.days_to_full == pytest.approx((500 * GiB - current) / (2 * GiB), rel=0.01)  # 186
    assert f.current_bytes == current and f.as_of == T0 + timedelta(days=14)


def test_forecast_with_noise_still_within_one_percent():
    f = cap.forecast(linear_history(noise=0.3), 500 * GiB)
    assert f.slope_bytes_per_day == pytest.approx(2 * GiB, rel=0.01)
    assert f.days_to_full == pytest.approx(186, rel=0.01)


def test_forecast_uses_only_the_window():
    old = linear_history(days=30, per_day=10 * GiB)  # steep past...
    recent = linear_history(days=7, start=old.bytes_used.iloc[-1], per_day=1 * GiB)
    recent["timestamp"] += timedelta(days=30, hours=1)
    df = pd.concat([old, recent], ignore_index=True)
    f = cap.forecast(df, 2000 * GiB, window=timedelta(days=7))
    assert f.slope_bytes_per_day == pytest.approx(1 * GiB, rel=0.01)
    assert f.points_used == len(recent)
    f_all = cap.forecast(df, 2000 * GiB, window=timedelta(days=60))
    assert f_all.slope_bytes_per_day > 3 * GiB


def test_forecast_flat_and_shrinking_give_none():
    flat = linear_history(per_day=0)
    f = cap.forecast(flat, 500 * GiB)
    assert f.days_to_warn is None and f.days_to_critical is None and f.days_to_full is None
    assert f.reason == "usage is flat or shrinking"
    assert abs(f.slope_bytes_per_day) < 1
    shrinking = linear_history(per_day=-1 * GiB, start=300 * GiB)
    f = cap.forecast(shrinking, 500 * GiB)
    assert f.days_to_full is None and f.slope_bytes_per_day < 0


def test_forecast_too_little_data():
    df = linear_history()
    f = cap.forecast(df.iloc[:2], 500 * GiB)
    assert f.method == "insufficient-data" and f.days_to_full is None and f.slope_bytes_per_day is None
    assert f.points_used == 2
    # many points over less than an hour
    short = pd.DataFrame(
        {
            "timestamp": [T0 + timedelta(minutes=i) for i in range(30)],
            "bytes_used": [i * GiB for i in range(30)],
        }
    )
    f = cap.forecast(short, 500 * GiB)
    assert f.method == "insufficient-data" and f.points_used == 30
    assert cap.forecast(df.iloc[:0], 500 * GiB).points_used == 0


def test_forecast_already_past_is_zero():
    df = linear_history(start=420 * GiB)  # 420 -> 448 GiB of 500: past warn (400), not critical (450)
    f = cap.forecast(df, 500 * GiB)
    assert f.days_to_warn == 0.0
    assert f.days_to_critical == pytest.approx((450 - 448) / 2, rel=0.01)
    # already past but shrinking: still 0 (it is past now)
    f = cap.forecast(linear_history(start=480 * GiB, per_day=-1 * GiB), 500 * GiB)
    assert f.days_to_warn == 0.0 and f.days_to_critical == 0.0 and f.days_to_full is None


def test_forecast_capacity_from_history_and_none():
    df = linear_history()
    f = cap.forecast(df)  # capacity_bytes column
    assert f.capacity_bytes == 500 * GiB and f.days_to_full == pytest.approx(186, rel=0.01)
    df2 = df.assign(capacity_bytes=float("nan"))
    f = cap.forecast(df2)
    assert f.days_to_full is None and f.slope_bytes_per_day == pytest.approx(2 * GiB, rel=0.01)
    assert f.reason == "no capacity known"


def test_forecast_filters_registry():
    a = linear_history(registry="a", per_day=2 * GiB)
    b = linear_history(registry="b", per_day=5 * GiB)
    df = pd.concat([a, b])
    assert cap.forecast(df, 500 * GiB, registry="b").slope_bytes_per_day == pytest.approx(5 * GiB, rel=0.01)


def test_usage_history_roundtrip_and_prune(tmp_path):
    h = cap.UsageHistory(tmp_path / "capacity" / "history.csv")
    assert h.load().empty
    for i in range(5):
        h.append("a", 1000 + i, 10_000, T0 + timedelta(days=i))
        h.append("s3reg", 50 + i, None, T0 + timedelta(days=i))
    df = h.load("a")
    assert list(df.columns) == cap.HISTORY_COLUMNS
    assert len(df) == 5 and list(df.bytes_used) == [1000, 1001, 1002, 1003, 1004]
    assert str(df.timestamp.dt.tz) == "UTC" and df.timestamp.iloc[0] == pd.Timestamp(T0)
    s3 = h.load("s3reg")
    assert s3.capacity_bytes.isna().all()
    assert (
        h.path.read_text().splitlines()[0]
        == "timestamp,registry,bytes_used,capacity_bytes,basis,days_to_full"
    )
    dropped = h.prune(keep=timedelta(days=2), now=T0 + timedelta(days=4))
    assert dropped == 4
    df = h.load()
    assert len(df) == 6 and df.timestamp.min() == pd.Timestamp(T0 + timedelta(days=2))
    assert h.load("s3reg").capacity_bytes.isna().all() and h.load("a").capacity_bytes.iloc[0] == 10_000


def test_usage_history_upgrades_an_old_file_and_forecasts_per_basis(tmp_path):
    """A history.csv written before the basis column is rewritten with every column on the next
    append; its rows count as file bytes, so a registry now measured in allocated bytes starts
    its forecast afresh instead of mixing the two."""
    path = tmp_path / "history.csv"
    old = ["timestamp,registry,bytes_used,capacity_bytes"]
    old += [
        f"{(T0 + timedelta(hours=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},a,{1000 + 10 * i},10000"
        for i in range(6)
    ]
    path.write_text("\n".join(old) + "\n")
    h = cap.UsageHistory(path)
    assert set(h.load("a").basis) == {"file bytes"}
    fc = h.record("a", 2000, 10_000, T0 + timedelta(hours=6), basis="allocated bytes")
    assert fc.method == "insufficient-data" and fc.points_used == 1  # the file-bytes rows are not mixed in
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(cap.HISTORY_COLUMNS) and len(lines) == 8
    assert lines[1].endswith(",file bytes,") and lines[-1].split(",")[4] == "allocated bytes"
    fc = h.record("a", 1070, 10_000, T0 + timedelta(hours=7), basis="file bytes")
    assert fc.method == "linear-least-squares" and fc.points_used == 7  # the old rows and this one
    assert fc.slope_bytes_per_day == pytest.approx(240, rel=0.01)
    assert h.load("a").days_to_full.iloc[-1] == pytest.approx(fc.days_to_full, abs=0.001)


def test_usage_history_prune_with_slack_rewrites_once_a_day(tmp_path):
    h = cap.UsageHistory(tmp_path / "history.csv")
    for i in range(10):
        h.append("a", i, None, T0 + timedelta(hours=12 * i), basis="file bytes")
    now = T0 + timedelta(days=5)
    # the oldest row is 5 days old: within keep (4d) + slack (2d) -> nothing rewritten
    assert h.prune(keep=timedelta(days=4), now=now, slack=timedelta(days=2)) == 0
    assert len(h.load()) == 10
    assert h.prune(keep=timedelta(days=4), now=now, slack=timedelta(hours=12)) == 2
    assert len(h.load()) == 8 and h.load().basis.iloc[0] == "file bytes"


# --------------------------------------------------------------------------- svg


def _svg(s):
    return ET.fromstring(s)


NS = "{http://www.w3.org/2000/svg}"


def test_render_usage_svg():
    df = linear_history(days=2)
    s = cap.render_usage_svg(df, 500 * GiB, 0.8, 0.9, registry="reg")
    root = _svg(s)
    assert root.tag == NS + "svg"
    poly = root.find(f"{NS}polyline")
    points = poly.get("points").split()
    assert len(points) == len(df)
    ys = [float(p.split(",")[1]) for p in points]
    xs = [float(p.split(",")[0]) for p in points]
    assert xs == sorted(xs) and ys[0] > ys[-1]  # growing usage goes up (smaller y)
    lines = {ln.get("class").split()[1]: float(ln.get("y1")) for ln in root.iter(f"{NS}line")}
    assert set(lines) == {"warn", "critical", "capacity"}
    assert lines["capacity"] < lines["critical"] < lines["warn"]
    # all usage is below the warn line here
    assert min(ys) > lines["warn"]
    texts = "".join(t.text or "" for t in root.iter(f"{NS}text"))
    assert "warn 80%" in texts and "critical 90%" in texts


def test_render_usage_svg_empty_no_capacity_and_escaping():
    root = _svg(cap.render_usage_svg(linear_history().iloc[:0], 500 * GiB, registry="x"))
    assert "no history yet" in "".join(t.text or "" for t in root.iter(f"{NS}text"))
    df = linear_history(days=1, registry="<evil&>")
    s = cap.render_usage_svg(df, None, registry="<evil&>")
    root = _svg(s)  # still well-formed
    assert list(root.iter(f"{NS}line")) == []  # no capacity: no threshold lines
    assert root.find(f"{NS}title").text == "Storage usage: <evil&>"


# =========================================================================== logical usage


def _m(digest, blobs, size=500, kind="image"):
    cfg = blobs[0][0] if blobs and kind == "image" else None
    return ManifestInfo(
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        kind=kind,
        size=size,
        config_digest=cfg,
        blobs=[Descriptor("application/octet-stream", d, s) for d, s in blobs],
    )


def sample_inventory():
    base = ("sha256:base", 1000)  # shared by app and web
    inv = Inventory(registry="r", scanned_at=T0)
    inv.repositories["app"] = RepoInventory(
        name="app",
        tags={"v1": "sha256:m1", "v2": "sha256:m2", "latest": "sha256:m2"},
        manifests={
            "sha256:m1": _m("sha256:m1", [("sha256:c1", 10), base, ("sha256:l1", 200)], 300),
            "sha256:m2": _m(
                "sha256:m2", [("sha256:c2", 20), base, ("sha256:l1", 200), ("sha256:l2", 50)], 400
            ),
        },
    )
    inv.repositories["web"] = RepoInventory(
        name="web",
        tags={"1.0": "sha256:m3"},
        manifests={"sha256:m3": _m("sha256:m3", [("sha256:c3", 5), base], 100)},
    )
    inv.repositories["empty"] = RepoInventory(name="empty")
    return inv


def test_logical_usage_unique_and_shared():
    df = cap.logical_usage(sample_inventory())
    assert list(df.columns) == cap.LOGICAL_COLUMNS
    rows = {r.repository: r for r in df.itertuples()}
    app, web, empty = rows["app"], rows["web"], rows["empty"]
    assert (app.tags, app.manifests) == (3, 2)
    # app: manifests 300+400, configs 10+20, l1 200 (once), l2 50 unique; base 1000 shared
    assert app.unique_bytes == 300 + 400 + 10 + 20 + 200 + 50
    assert app.shared_bytes == 1000
    assert (web.unique_bytes, web.shared_bytes, web.total_bytes) == (100 + 5, 1000, 1105)
    assert (empty.tags, empty.total_bytes) == (0, 0)
    assert list(df.repository) == ["app", "web", "empty"]  # largest first
    assert cap.deduplicated_bytes(sample_inventory()) == 300 + 400 + 10 + 20 + 200 + 50 + 1000 + 100 + 5
    assert cap.image_counts(sample_inventory()) == (4, 3)


def test_logical_usage_empty_inventory():
    df = cap.logical_usage(Inventory(registry="r", scanned_at=T0))
    assert df.empty and list(df.columns) == cap.LOGICAL_COLUMNS


def test_pick_pull_samples_prefers_small_images():
    inv = sample_inventory()
    assert cap.pick_pull_samples(inv, n=5) == [("web", "1.0"), ("app", "v1")]
    assert cap.pick_pull_samples(inv, n=1) == [("web", "1.0")]


# =========================================================================== capacity resolution


def _usage(source="filesystem", used=80, size=100):
    if source == "s3":
        return cap.StorageUsage(used, 3, None, None, "s3", "s3://b/")
    return cap.StorageUsage(used, 3, size, 10, "filesystem", "/x")


def test_resolve_capacity():
    assert cap.resolve_capacity(_usage(), 1000) == (1000, "capacityBytes", None)
    assert cap.resolve_capacity(_usage(), None) == (100, "filesystem", None)
    c, src, note = cap.resolve_capacity(_usage("s3"), None)
    assert c is None and src == "none" and "S3" in note and "no usage ratio" in note
    assert cap.resolve_capacity(_usage("s3"), 500)[0] == 500
    assert cap.resolve_capacity(None, None)[0] is None


def test_check_capacity_s3_without_capacity_reports_no_ratio(tmp_path):
    store = cap.StateStore(tmp_path)
    chk = cap.check_capacity(
        "s3reg", _usage("s3", used=10**12), store=store, history=cap.UsageHistory(tmp_path / "h.csv"), now=T0
    )
    assert chk.ratio is None and chk.alert is None and chk.capacity_bytes is None
    assert "no usage ratio" in chk.note
    assert chk.forecast.method == "insufficient-data"


# =========================================================================== metrics


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, name, **labels):
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_run_metrics_success_text():
    m = rkm.RunMetrics("capacity", "local-registry")
    m.set_storage(800, 1000, files=7)
    m.set_image_count(12, manifests=9, repositories=3)
    m.set_days_to_full(4.5)
    for s in (0.01, 0.02, 0.2):
        m.observe_pull(s)
    m.finish(True, now=1_700_000_000)
    fams = families(m.text())
    r = {"registry": "local-registry"}
    assert sample(fams, "registry_storage_bytes_total", **r) == 800
    assert sample(fams, "registry_storage_capacity_bytes", **r) == 1000
    assert sample(fams, "registry_storage_usage_ratio", **r) == pytest.approx(0.8)
    assert sample(fams, "registry_image_count", **r) == 12
    assert sample(fams, "registry_manifest_count", **r) == 9
    assert sample(fams, "registry_pull_duration_seconds_count", **r) == 3
    assert sample(fams, "registry_pull_duration_seconds_bucket", le="0.025", **r) == 2
    fr = {"flow": "capacity", "registry": "local-registry"}
    assert sample(fams, "regkeeper_last_success_timestamp_seconds", **fr) == 1_700_000_000
    assert sample(fams, "regkeeper_last_run_timestamp_seconds", **fr) == 1_700_000_000
    assert sample(fams, "regkeeper_run_success", **fr) == 1
    assert sample(fams, "regkeeper_items_failed", **fr) == 0


def test_run_metrics_failure_has_no_last_success_family():
    m = rkm.RunMetrics("gc", "r1")
    m.set_bytes_reclaimed(0)
    m.set_items_failed(3)
    m.finish(False, now=1_700_000_100)
    text = m.text()
    assert "regkeeper_last_success_timestamp_seconds" not in text  # not even HELP/TYPE
    fams = families(text)
    assert sample(fams, "regkeeper_run_success", flow="gc", registry="r1") == 0
    assert sample(fams, "regkeeper_items_failed", flow="gc", registry="r1") == 3
    assert sample(fams, "regkeeper_last_run_timestamp_seconds", flow="gc", registry="r1") == 1_700_000_100


def test_run_metrics_replication_and_fresh_registry():
    a = rkm.RunMetrics("replicate", "primary")
    a.set_items_replicated("eu", 5)
    a.set_replication_lag("eu", 2)
    fams = families(a.text())
    assert sample(fams, "regkeeper_items_replicated", registry="primary", target="eu") == 5
    assert sample(fams, "regkeeper_replication_lag_tags", source="primary", target="eu") == 2
    b = rkm.RunMetrics("replicate", "primary")  # a fresh registry per run: nothing carried over
    assert b.text() == ""
    # no family without a value
    assert "registry_storage_capacity_bytes" not in rkm.RunMetrics("c", "s3").text()
    m = rkm.RunMetrics("capacity", "s3")
    m.set_storage(10)
    assert "registry_storage_usage_ratio" not in m.text()
    # the global default registry is untouched
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("registry_storage_bytes_total", {"registry": "s3"}) is None


def test_metric_names_cover_the_contract():
    required = {
        "registry_storage_bytes_total",
        "registry_storage_capacity_bytes",
        "registry_storage_usage_ratio",
        "registry_image_count",
        "registry_manifest_count",
        "registry_pull_duration_seconds",
        "regkeeper_last_success_timestamp_seconds",
        "regkeeper_last_run_timestamp_seconds",
        "regkeeper_run_success",
        "regkeeper_bytes_reclaimed",
        "regkeeper_items_replicated",
        "regkeeper_items_failed",
        "regkeeper_replication_lag_tags",
    }
    assert required <= set(rkm.SPEC)
    assert rkm.SPEC["registry_pull_duration_seconds"][0] == "histogram"
    assert rkm.SPEC["regkeeper_items_replicated"][2] == ("registry", "target")
    assert rkm.SPEC["regkeeper_replication_lag_tags"][2] == ("source", "target")
