"""The read-only state machine and alert payloads (pure): one alert when a registry turns
read-only, none while a live regkeeper window explains it or while nothing changed, again after
the re-assert interval, a resolve when writes work again."""

from datetime import UTC, datetime, timedelta

from regkeeper.capacity import ReadOnlyAlert, ReadOnlyState, WriteCheck, evaluate_writes
from regkeeper.capacity.readonly import alertmanager_payload, event_payload, slack_payload

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REFUSED = WriteCheck("r1", True, "POST /v2/x/blobs/uploads/: HTTP 405: the registry refuses writes", 405)
TAKEN = WriteCheck("r1", False, "writes accepted", 202)
UNKNOWN = WriteCheck("r1", None, "write check not permitted", 403)


def test_read_only_alerted_once_then_resolved():
    st, alert = evaluate_writes(REFUSED, ReadOnlyState("r1"), now=T0)
    assert alert.kind == "read-only" and st.read_only and st.since == "2026-01-01T12:00:00Z"
    assert "[READ-ONLY] registry r1 refuses writes since 2026-01-01T12:00:00Z" in alert.message
    assert "no regkeeper run holds a read-only window" in alert.message
    st2, again = evaluate_writes(REFUSED, st, now=T0 + timedelta(minutes=5))
    assert again is None and st2 == st  # still read-only: nothing new
    st3, again = evaluate_writes(REFUSED, st, now=T0 + timedelta(hours=13))
    assert again.kind == "read-only" and st3.since == st.since  # re-asserted, same since
    st4, resolved = evaluate_writes(TAKEN, st3, now=T0 + timedelta(hours=14))
    assert resolved.kind == "writable" and not st4.read_only and "[RESOLVED]" in resolved.message
    assert evaluate_writes(TAKEN, st4, now=T0 + timedelta(hours=15)) == (st4, None)


def test_live_window_and_unknown_change_nothing():
    prev = ReadOnlyState("r1")
    owned = "read-only for garbage-collect by run R"
    assert evaluate_writes(REFUSED, prev, owned_by=owned, now=T0) == (prev, None)
    assert evaluate_writes(UNKNOWN, prev, now=T0) == (prev, None)
    _, alert = evaluate_writes(
        REFUSED,
        prev,
        stale="a read-only window of run R is open but its owner is gone (pid 7 is not running)",
        now=T0,
    )
    assert "owner is gone (pid 7 is not running)" in alert.message


def test_payloads():
    ro = ReadOnlyAlert("r1", "read-only", "[READ-ONLY] registry r1 ...", T0, {"since": "x"})
    (am,) = alertmanager_payload(ro)
    assert am["labels"] == {
        "alertname": "RegistryReadOnly",
        "severity": "critical",
        "registry": "r1",
        "source": "regkeeper",
    }
    assert am["startsAt"] == "2026-01-01T12:00:00Z" and am["endsAt"] == "2026-01-02T12:00:00Z"
    rec = ReadOnlyAlert("r1", "recovered", "recovered: registry r1 ...", T0, {"run": "R", "pid": 7})
    ended, info = alertmanager_payload(rec)
    assert ended["endsAt"] == "2026-01-01T12:00:00Z" and "startsAt" not in ended
    assert info["labels"]["alertname"] == "RegistryReadOnlyRecovered" and info["annotations"]["pid"] == "7"
    assert slack_payload(rec)["text"].startswith("recovered: registry r1")
    name, resource, payload = event_payload(rec)
    assert name == "regkeeper.readonly.recovered" and payload["run"] == "R"
    assert resource["prefect.resource.id"] == "regkeeper.registry.r1"
