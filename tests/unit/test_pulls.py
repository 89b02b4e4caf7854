"""Pull events, the pull store (SQLite), coverage of a window, and ``pulledWithin`` in the
planner (gc and a keepLast/keepDays tier) and the config."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from regkeeper.config import TierConfig, parse_config
from regkeeper.errors import ConfigError
from regkeeper.policy import gc_resolver, plan, tier_resolver
from regkeeper.pulls import PullHistory, PullStore, parse_envelope
from regkeeper.pulls.events import PullEvent, parse_time
from regkeeper.pulls.history import Gap
from tests.unit.test_policy import NOW, ago, by_tag, dg, image, inv, repo

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def event(
    action="pull", media=DOCKER, tag="v1", ua="docker/24.0", digest=None, ts="2026-12-01T10:00:00.123456789Z"
):
    target = {"mediaType": media, "digest": digest or dg("a"), "repository": "team/app", "size": 10}
    if tag:
        target["tag"] = tag
    return {
        "id": "x",
        "timestamp": ts,
        "action": action,
        "target": target,
        "request": {"addr": "10.0.0.1:5555", "host": "reg:5000", "method": "GET", "useragent": ua},
        "source": {"addr": "reg:5000"},
    }


def test_envelope_keeps_manifest_pulls_only_and_excludes_agents():
    body = json.dumps(
        {
            "events": [
                event(),
                event(tag=None, digest=dg("b")),  # by digest: no tag
                event(media="application/octet-stream"),  # a blob pull
                event(action="push"),
                event(ua="regkeeper/0.1.0"),
                event(ua="Skopeo/1.9"),
            ]
        }
    ).encode()
    p = parse_envelope(body, ["regkeeper/*", "skopeo/*"])
    assert p.events == 6 and p.excluded == 2
    assert [(e.digest, e.tag) for e in p.pulls] == [(dg("a"), "v1"), (dg("b"), None)]
    assert p.pulls[0].at == datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert p.pulls[0].user_agent == "docker/24.0" and p.pulls[0].addr == "10.0.0.1:5555"


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"events": 3}'])
def test_not_an_envelope(body):
    from regkeeper.pulls import EnvelopeError

    with pytest.raises(EnvelopeError):
        parse_envelope(body, [])


def test_parse_time_offsets():
    assert parse_time("2026-12-01T10:00:00+01:00") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00:00.5Z").microsecond == 500000


def test_store_aggregates_an_envelope_and_keeps_the_latest_pull(tmp_path):
    s = PullStore(f"sqlite:///{tmp_path}/p.sqlite")
    t = datetime(2026, 12, 1, tzinfo=UTC)
    ev = [
        PullEvent("r", dg("a"), t, "v1", "docker", "x"),
        PullEvent("r", dg("a"), t + timedelta(minutes=1), "v2", "podman", "x"),
        PullEvent("r", dg("b"), t, None, "curl", "x"),
    ]
    assert s.record("reg", ev, t + timedelta(minutes=2)).rows == 2
    s.record(
        "reg", [PullEvent("r", dg("a"), t - timedelta(days=1), "old", "old", "x")], t + timedelta(minutes=3)
    )
    rows = {r["digest"]: r for r in s.rows("reg")}
    a = rows[dg("a")]
    assert a["pull_count"] == 3 and a["last_tag"] == "v2" and a["last_user_agent"] == "podman"
    assert a["last_pull"] == t + timedelta(minutes=1)  # a late, older event does not move it back
    h = s.history("reg")
    assert h.since == t + timedelta(minutes=2)  # collection starts at the first envelope
    assert h.last_pull("r", dg("b")) == t
    s.close()


def test_receiver_restart_after_a_silence_records_a_gap(tmp_path):
    s = PullStore(f"sqlite:///{tmp_path}/p.sqlite")
    t = datetime(2026, 12, 1, tzinfo=UTC)
    assert s.receiver_started(t, 600) == []
    s.record("reg", [], t)
    s.heartbeat(t + timedelta(minutes=1))
    assert s.receiver_started(t + timedelta(minutes=5), 600) == []  # a short restart: no gap
    gaps = s.receiver_started(t + timedelta(hours=1), 600)
    assert [(g.start, g.end) for g in gaps] == [(t + timedelta(minutes=5), t + timedelta(hours=1))]
    assert s.history("reg").gaps[0].reason == "receiver down"
    s.close()


def hist(since_days: float | None, *, gaps=(), alive_days: float = 0, last=None) -> PullHistory:
    return PullHistory(
        "local-registry",
        last or {},
        None if since_days is None else ago(since_days),
        list(gaps),
        ago(alive_days),
        timedelta(minutes=10),
    )


def test_shortfall():
    w = timedelta(days=30)
    assert hist(40).shortfall(w, NOW) is None
    assert "collecting since" in hist(10).shortfall(w, NOW)
    assert "no pull events recorded" in hist(None).shortfall(w, NOW)
    gap = Gap(ago(20), ago(19), "receiver down")
    assert "gap in the window (receiver down" in hist(40, gaps=[gap]).shortfall(w, NOW)
    old_gap = Gap(ago(35), ago(34), "receiver down")
    assert hist(40, gaps=[old_gap]).shortfall(w, NOW) is None
    assert "receiver not heard from" in hist(40, alive_days=1).shortfall(w, NOW)


def _repo():
    ms = [image("pulled"), image("cold"), image("new")]
    return repo(
        "app",
        ms,
        {"pulled": "pulled", "cold": "cold", "new": "new"},
        pushed={"pulled": 60, "cold": 60, "new": 1},
        untagged=[],
    )


def test_gc_pulled_within_keeps_what_was_pulled_and_names_the_pull():
    h = hist(40, last={("app", dg("pulled")): ago(1)})
    res = gc_resolver(["**"], [], 30, 1, [], pulled_within=timedelta(days=30))
    t = by_tag(plan(inv(_repo()), res, now=NOW, pulls=h))
    assert (
        t["pulled"].action == "keep"
        and t["pulled"].reason.startswith("pulled 2")
        and "(within 30d)" in t["pulled"].reason
    )
    assert t["cold"].action == "delete"
    # without pulledWithin in the rule the history is not consulted
    t = by_tag(plan(inv(_repo()), gc_resolver(["**"], [], 30, 1, []), now=NOW, pulls=h))
    assert t["pulled"].action == "delete"


def test_tier_pulled_within_short_history_keeps_everything_the_rule_would_delete():
    tier = TierConfig.model_validate(
        {"name": "biz", "match": ["**"], "keepLast": 1, "keepDays": 30, "pulledWithin": "30d"}
    )
    ms = [image("cold"), image("new"), image("orphan")]
    r = repo("app", ms, {"cold": "cold", "new": "new"}, pushed={"cold": 60, "new": 1}, untagged=["orphan"])
    p = plan(inv(r), tier_resolver([tier]), now=NOW, pulls=hist(5))
    assert p.deleted_tags() == [] and p.manifests_to_delete() == []
    assert by_tag(p)["cold"].reason.startswith("pull history shorter than the window (collecting since")
    md = {m.digest: m for m in p.manifests}
    assert md[dg("orphan")].reason.startswith("untagged, pull history shorter")
    # covered: the cold image and the orphan go
    p = plan(inv(r), tier_resolver([tier]), now=NOW, pulls=hist(40))
    assert {t.tag for t in p.deleted_tags()} == {"cold"} and ("app", dg("orphan")) in p.manifests_to_delete()


BASE = "mirrorRepositories: [{name: local-registry, type: local, url: http://127.0.0.1:5000}]\n"


def test_config_pulled_within_needs_a_pulls_section():
    with pytest.raises(ConfigError, match=r"gc.pulledWithin: needs a `pulls` section"):
        parse_config(BASE + "gc: {pulledWithin: 30d}\n")
    cfg = parse_config(BASE + "gc: {pulledWithin: 30d}\npulls: {token: env:T}\n")
    assert cfg.gc.pulled_within == timedelta(days=30)
    assert cfg.pulls_store_url().startswith("sqlite:///") and cfg.pulls_store_url().endswith("/pulls.sqlite")


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("pulls: {listen: nowhere}\n", "pulls.listen"),
        ("pulls: {store: mysql://x}\n", "pulls.store"),
        ("pulls: {exclude: {agents: [x]}}\n", "pulls.exclude"),
        ("tiers: [{name: t, match: ['**'], ttl: 72h, pulledWithin: 30d}]\npulls: {}\n", "tiers[0]"),
    ],
)
def test_config_errors_name_the_key(yaml_text, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(BASE + yaml_text)


def test_store_url_from_a_secret_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("RK_PULLS_STORE", f"sqlite:///{tmp_path}/x.sqlite")
    cfg = parse_config(BASE + "pulls: {store: env:RK_PULLS_STORE}\n")
    assert cfg.pulls_store_url() == f"sqlite:///{tmp_path}/x.sqlite"


def test_an_unreachable_store_keeps_everything_and_never_shows_the_password(dead_port):
    from regkeeper.pulls.lookup import history_for

    port = dead_port
    cfg = parse_config(
        BASE
        + f"gc: {{pulledWithin: 30d}}\npulls: {{store: 'postgresql://rk:hunter2pw@127.0.0.1:{port}/db'}}\n"
    )
    hist, notes = history_for(cfg, "gc", "local-registry", NOW)
    assert hist is None and len(notes) == 1
    assert "pull history unavailable" in notes[0] and "every image the rule would delete is kept" in notes[0]
    assert "hunter2pw" not in notes[0]
    res = gc_resolver(["**"], [], 30, 1, [], pulled_within=timedelta(days=30))
    p = plan(inv(_repo()), res, now=NOW, pulls=None)
    assert p.deleted_tags() == [] and by_tag(p)["cold"].reason == "pull history unavailable"


def test_a_receiver_without_a_token_listens_on_loopback_only(tmp_path):
    from regkeeper.pulls.receiver import PullReceiver

    cfg = parse_config(BASE + f"pulls: {{listen: '0.0.0.0:5080', store: 'sqlite:///{tmp_path}/p.sqlite'}}\n")
    with pytest.raises(ConfigError, match="pulls.token: required when the receiver listens on 0.0.0.0"):
        PullReceiver(cfg)


def test_a_receiver_whose_port_is_taken_names_the_address(tmp_path):
    """A port another process holds: a named error (the key and the address), not a bare OSError;
    the store it opened is closed."""
    import socket

    from regkeeper.errors import RegkeeperError
    from regkeeper.pulls.receiver import PullReceiver

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cfg = parse_config(
            BASE + f"pulls: {{listen: '127.0.0.1:{port}', store: 'sqlite:///{tmp_path}/p.sqlite'}}\n"
        )
        with pytest.raises(
            RegkeeperError,
            match=rf"cannot listen on 127.0.0.1:{port} \(pulls.listen\): Address already in use",
        ):
            PullReceiver(cfg)
        with pytest.raises(RegkeeperError, match=rf"cannot listen on 127.0.0.1:{port} \(--listen\)"):
            PullReceiver(cfg, listen=("127.0.0.1", port))


def test_pulls_per_day_for_a_backtest(tmp_path):
    from datetime import date

    s = PullStore(f"sqlite:///{tmp_path}/p.sqlite")
    t = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)
    ev = [
        PullEvent("r", dg("a"), t, "v1", "docker", "x"),
        PullEvent("r", dg("a"), t + timedelta(minutes=2), "v1", "docker", "x"),
    ]
    s.record("reg", ev, t)
    s.record_pull("reg", "r", dg("a"), t + timedelta(days=3))
    assert s.pull_days("reg")[("r", dg("a"))] == [
        (date(2026, 12, 1), 1),
        (date(2026, 12, 2), 1),
        (date(2026, 12, 4), 1),
    ]
    assert s.pull_days("reg", since=t + timedelta(days=1))[("r", dg("a"))] == [
        (date(2026, 12, 2), 1),
        (date(2026, 12, 4), 1),
    ]
    s.close()


def test_receiver_metrics_names_are_what_metrics_exposes(tmp_path):
    from prometheus_client import generate_latest

    from regkeeper.pulls.receiver import RECEIVER_METRICS, ReceiverMetrics

    m = ReceiverMetrics()
    m.received.labels("r").inc()
    m.rejected.labels("r", "token").inc()
    m.stored.labels("r").inc()
    m.excluded.labels("r").inc()
    m.duplicate.labels("r").inc()
    m.last_event.labels("r").set(1)
    m.seconds.observe(0.001)
    text = generate_latest(m.registry).decode()
    exposed = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    exposed = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in exposed}
    exposed = {n for n in exposed if not n.endswith("_created")}
    assert exposed == RECEIVER_METRICS
