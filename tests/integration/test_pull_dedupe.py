"""distribution sends an envelope again when its answer was late or lost (it retries until an
endpoint answers 2xx). A pull is counted once however often its event arrives: the store keeps
the ids of the events it stored (SQLite and PostgreSQL alike, and across two stores on one
database: two receiver replicas); an event without an id is counted as it comes."""

import json
from datetime import UTC, datetime, timedelta

import requests

from regkeeper.config import parse_config
from regkeeper.pulls.events import PullEvent
from regkeeper.pulls.receiver import PullReceiver
from regkeeper.pulls.store import SEEN_RETENTION, PullStore
from tests.support.procs import free_port

T = datetime(2026, 12, 1, 12, tzinfo=UTC)
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _ev(digest: str, event_id: str, minutes: int = 0) -> PullEvent:
    return PullEvent(
        "team/app", digest, T + timedelta(minutes=minutes), "v1", "docker/24", "10.0.0.1", event_id
    )


def _counts(store: PullStore) -> dict[str, int]:
    return {r["digest"]: r["pull_count"] for r in store.rows("reg")}


def test_an_envelope_sent_again_counts_once(pull_store_url):
    one, two = PullStore(pull_store_url), PullStore(pull_store_url)  # two receivers, one database
    try:
        env = [_ev(A, "e1"), _ev(A, "e2", 1), _ev(B, "e3")]
        assert one.record("reg", env, T) == (2, 0)
        assert one.record("reg", env, T + timedelta(seconds=5)) == (0, 3)  # the same envelope again
        assert two.record("reg", env[1:], T + timedelta(seconds=9)) == (0, 2)  # to the other replica
        assert _counts(one) == {A: 2, B: 1}
        assert sum(c for days in one.pull_days("reg").values() for _, c in days) == 3
        # a new event in a resent envelope still counts; events without an id count as they come
        assert two.record("reg", [_ev(A, "e1"), _ev(A, "e4", 2)], T + timedelta(minutes=3)) == (1, 1)
        one.record("reg", [_ev(B, "")], T + timedelta(minutes=4))
        one.record("reg", [_ev(B, "")], T + timedelta(minutes=4))
        assert _counts(two) == {A: 3, B: 3}
        # another registry's event with the same id is its own
        assert one.record("other", [_ev(A, "e1")], T) == (1, 0)
        # ids are forgotten after SEEN_RETENTION (a resend comes within minutes)
        assert one.prune_seen(T + SEEN_RETENTION + timedelta(minutes=10)) == 5  # e1-e4, other's e1
        assert one.record("reg", [_ev(A, "e1")], T + SEEN_RETENTION) == (1, 0)
    finally:
        one.close()
        two.close()


def test_the_receiver_answers_a_resend_200_and_counts_it_apart(tmp_path):
    cfg = parse_config(
        "mirrorRepositories: [{name: local-registry, type: local, url: http://127.0.0.1:5000}]\n"
        f"pulls: {{listen: '127.0.0.1:{free_port()}', store: 'sqlite:///{tmp_path}/p.sqlite'}}\n"
    )
    rx = PullReceiver(cfg).start()
    try:
        event = {
            "id": "7e3c1f0a-1",
            "timestamp": "2026-12-01T12:00:00.123456789Z",
            "action": "pull",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": A,
                "repository": "team/app",
                "tag": "v1",
            },
            "request": {"addr": "10.0.0.1:5555", "useragent": "docker/24.0"},
        }
        body = json.dumps({"events": [event]})
        url = f"{rx.url}/events/local-registry"
        headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
        for _ in range(3):
            assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
        assert [r["pull_count"] for r in rx.store.rows("local-registry")] == [1]
        metrics = requests.get(f"{rx.url}/metrics", timeout=10).text
        assert 'regkeeper_pull_events_stored_total{registry="local-registry"} 1.0' in metrics
        assert 'regkeeper_pull_events_duplicate_total{registry="local-registry"} 2.0' in metrics
    finally:
        rx.stop()
