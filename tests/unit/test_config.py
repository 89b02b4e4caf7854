import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from regkeeper.config import (
    Config,
    ConfigError,
    SecretError,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "regkeeper.yaml"

BASE = """\
mirrorRepositories:
- name: local-registry
  type: local
  url: http://127.0.0.1:5000
"""


def test_seed_shaped_file_loads():
    cfg = load_config(EXAMPLE)
    names = [r.name for r in cfg.mirror_repositories]
    assert names == ["local-registry", "s3-registry", "proxy-registry"]
    local = cfg.registry("local-registry")
    assert local.type == "local" and local.storage.type == "directory"
    assert local.storage.path == "/var/lib/registry"
    assert local.capacity_bytes == 500 * 1024**3
    assert local.reclaim.mode == "command"
    s3 = cfg.registry("s3-registry")
    assert (s3.type, s3.endpoint, s3.bucket) == ("s3", "https://minio.example.com", "registry-images")
    assert s3.storage_kind == "s3"
    proxy = cfg.registry("proxy-registry")
    assert proxy.upstream == "https://registry-1.docker.io"
    assert proxy.proxy_cache.storage == "/var/lib/registry-cache"
    tiers = {t.name: t for t in cfg.tiers}
    assert tiers["base"].keep == "forever"
    assert (tiers["business"].keep_last, tiers["business"].keep_days) == (10, 30)
    assert tiers["temp"].ttl == timedelta(hours=72) and tiers["temp"].delete_repository
    assert cfg.gc.days == 30 and cfg.gc.keep_last == 5 and cfg.gc.protect == ["latest", "v*"]
    assert cfg.gc.max_delete_fraction == 0.5
    assert cfg.replication[0].from_ == "local-registry" and cfg.replication[0].to == ["s3-registry"]
    assert cfg.backup.target == "s3://registry-backup/meta" and cfg.backup.keep == 14
    assert (cfg.capacity.warn, cfg.capacity.critical) == (0.8, 0.9)
    assert cfg.kubernetes.contexts == ["prod", "staging"] and cfg.kubernetes.fail_closed
    assert cfg.registry_hosts("local-registry") == {"registry.local:5000"}


@pytest.mark.parametrize(
    "value,expected",
    [
        ("500Gi", 500 * 1024**3),
        ("1Ti", 1024**4),
        ("10GB", 10 * 1000**3),
        ("1.5T", int(1.5e12)),
        (1024, 1024),
        ("512", 512),
        ("64Mi", 64 * 1024**2),
    ],
)
def test_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("72h", timedelta(hours=72)),
        ("30d", timedelta(days=30)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        (60, timedelta(seconds=60)),
    ],
)
def test_durations(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize("bad", ["72x", "h", "", "1h 2"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "conf.yaml")
    return str(ei.value)


def test_missing_url_names_key_and_line():
    msg = _err(BASE + "- name: second\n  type: local\n")
    assert "conf.yaml:5" in msg
    assert "mirrorRepositories[1].url" in msg


def test_bad_type_names_key():
    msg = _err(BASE.replace("type: local", "type: locl"))
    assert "mirrorRepositories[0].type" in msg and "'locl'" in msg and "conf.yaml:3" in msg


def test_bad_size_names_key():
    msg = _err(BASE + "  capacityBytes: 5Zi\n")
    assert "mirrorRepositories[0].capacityBytes" in msg and "5Zi" in msg


def test_unknown_key_suggests_nearest():
    msg = _err(BASE + "  capacityByte: 5Gi\n")
    assert "mirrorRepositories[0].capacityByte: unknown key" in msg
    assert "did you mean 'capacityBytes'" in msg
    msg = _err(BASE + "gc: {registry: local-registry, keeplast: 3}\n")
    assert "gc.keeplast" in msg and "did you mean 'keepLast'" in msg


def test_bad_duration_names_key():
    msg = _err(BASE + "tiers:\n- {name: temp, match: ['tmp/**'], ttl: 72 hours}\n")
    assert "tiers[0].ttl" in msg


def test_unknown_registry_reference():
    msg = _err(BASE + "gc: {registry: local-registy}\n")
    assert "gc.registry" in msg or "unknown registry 'local-registy'" in msg
    assert "did you mean 'local-registry'" in msg


@pytest.mark.parametrize(
    "extra, line_key",
    [
        ("gc: {registry: local-registy}\n", "conf.yaml:5: gc.registry: unknown registry"),
        ("expire: {registry: nope}\n", "conf.yaml:5: expire.registry: unknown registry"),
        (
            "replication:\n- from: local-registry\n  to: [elsewhere]\n",
            "conf.yaml:7: replication[0].to: unknown registry 'elsewhere'",
        ),
        (
            "tiers:\n- name: b\n  match: ['**']\n  rules:\n  - {keep: {pulledWithin: 30d}}\n",
            "conf.yaml:9: tiers[0].rules[0].keep.pulledWithin: needs a `pulls` section",
        ),
    ],
)
def test_cross_reference_errors_name_their_line_and_key(extra, line_key):
    """A check over the whole file names the key it is about and that key's line, not
    ``conf.yaml:1: (top level)``."""
    msg = _err(BASE + extra)
    assert line_key in msg, msg
    assert "(top level)" not in msg


PROXY = (
    BASE
    + """\
- name: cache
  type: proxy
  url: http://127.0.0.1:5001
  upstream: http://127.0.0.1:5000
"""
)


@pytest.mark.parametrize(
    "extra, line_key, why",
    [
        ("expire: {registry: cache}\n", "conf.yaml:9: expire.registry", "DELETE with 405"),
        (
            "replication:\n- from: local-registry\n  to: [cache]\n",
            "conf.yaml:11: replication[0].to",
            "takes no pushes",
        ),
        (
            "replication:\n- from: cache\n  to: [local-registry]\n",
            "conf.yaml:10: replication[0].from",
            "replicate from the upstream",
        ),
        (
            "backup:\n  target: file:///tmp/b\n  registries: [local-registry, cache]\n",
            "conf.yaml:11: backup.registries",
            "back up the upstream",
        ),
    ],
)
def test_jobs_that_cannot_act_on_a_proxy_refuse_it_at_load(extra, line_key, why):
    msg = _err(PROXY + extra)
    assert f"{line_key}: registry 'cache' is type proxy: " in msg and why in msg, msg


def test_gc_on_a_proxy_loads_and_its_tag_rules_are_refused():
    cfg = parse_config(PROXY + "gc: {registry: cache}\n", "conf.yaml")
    assert cfg.gc.registry == "cache"
    msg = _err(PROXY + "gc:\n  registry: cache\n  keepLast: 3\n")
    assert "conf.yaml:11: gc.keepLast: does not apply to registry 'cache': it is type proxy" in msg, msg
    assert "proxyCache.maxBytes" in msg


def test_tier_needs_one_policy():
    msg = _err(BASE + "tiers:\n- {name: x, match: ['a/**'], keep: forever, ttl: 1h}\n")
    assert "tiers[0]" in msg and "exactly one policy" in msg


def test_not_yaml():
    msg = _err("mirrorRepositories: [\n")
    assert "conf.yaml" in msg and "not valid YAML" in msg


def test_missing_env_secret_names_key(monkeypatch):
    monkeypatch.delenv("RK_TEST_PASS", raising=False)
    cfg = parse_config(
        BASE + "  auth: {username: env:RK_TEST_USER, password: env:RK_TEST_PASS}\n", "conf.yaml"
    )
    monkeypatch.setenv("RK_TEST_USER", "bob")
    with pytest.raises(SecretError) as ei:
        cfg.registry().auth.password.get()
    assert "mirrorRepositories[0].auth.password" in str(ei.value)
    assert "RK_TEST_PASS" in str(ei.value)


def test_secrets_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("RK_TEST_USER", "bob")
    monkeypatch.setenv("RK_TEST_PASS", "hunter2-very-secret")
    cfg = parse_config(
        BASE + "  auth: {username: env:RK_TEST_USER, password: env:RK_TEST_PASS}\n"
        "  accessKey: LITERALKEY123\n",
        "conf.yaml",
    )
    pw = cfg.registry().auth.password
    assert pw.get() == "hunter2-very-secret"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("config: %s %r", cfg, cfg.registry())
    text = repr(cfg) + str(cfg) + cfg.model_dump_json() + caplog.text + repr(pw) + str(pw)
    assert "hunter2" not in text
    assert "LITERALKEY123" not in text
    assert "env:RK_TEST_PASS" in repr(pw)


def test_registry_lookup_error():
    cfg = parse_config(BASE, "conf.yaml")
    with pytest.raises(ConfigError) as ei:
        cfg.registry("local-registri")
    assert "did you mean 'local-registry'" in str(ei.value)


def test_warn_below_critical():
    msg = _err(BASE + "capacity: {warn: 0.95, critical: 0.9}\n")
    assert "capacity" in msg and "below critical" in msg


def test_config_model_is_the_contract():
    # keys shown in DESIGN.md must stay accepted
    fields = {f.alias or n for n, f in Config.model_fields.items()}
    assert {"mirrorRepositories", "tiers", "gc", "replication", "backup", "capacity", "kubernetes"} <= fields


# --------------------------------------------------------------------------- reclaim safety

RECLAIM = (
    BASE
    + """\
  storage: {type: directory, path: /var/lib/registry}
  reclaim:
    mode: command
"""
)
GC = "    garbageCollect: [docker-registry, garbage-collect, /etc/docker/registry/config.yml]\n"
RO = "    readOnly: [systemctl, start, registry-readonly.service]\n"
RW = "    readWrite: [systemctl, start, registry-readwrite.service]\n"


def test_reclaim_command_without_read_only_is_refused():
    msg = _err(RECLAIM + GC)
    # names the key that is missing and the line of its section (reclaim: is line 6)
    assert "conf.yaml:6: mirrorRepositories[0].reclaim.readOnly:" in msg
    assert "live, writable registry" in msg and "liveGarbageCollect: true" in msg
    # the second registry's index and line are named too
    two = BASE + "- name: second\n  url: http://127.0.0.1:5001\n  reclaim:\n    mode: command\n" + GC
    msg = _err(two)
    assert "conf.yaml:7: mirrorRepositories[1].reclaim.readOnly:" in msg


def test_reclaim_live_garbage_collect_needs_the_acknowledgement():
    cfg = parse_config(RECLAIM + GC + "    liveGarbageCollect: true\n", "conf.yaml")
    rc = cfg.registry().reclaim
    assert rc.mode == "command" and rc.live_garbage_collect and rc.read_only is None
    assert "readOnly" in _err(RECLAIM + GC + "    liveGarbageCollect: false\n")


def test_reclaim_with_read_only_window_is_accepted():
    rc = parse_config(RECLAIM + RO + GC + RW, "conf.yaml").registry().reclaim
    assert rc.read_only[0] == "systemctl" and rc.read_write[-1] == "registry-readwrite.service"
    assert rc.live_garbage_collect is False


def test_reclaim_kubernetes_job_without_read_only_is_refused_too():
    # the Job runs the same garbage-collect: on a writable registry it can lose a concurrent push
    job = BASE + "  reclaim: {mode: kubernetes-job, jobTemplate: /tmp/job.yaml}\n"
    msg = _err(job)
    assert "mirrorRepositories[0].reclaim.readOnly:" in msg and "kubernetes-job" in msg
    ok = (
        parse_config(
            BASE + "  reclaim: {mode: kubernetes-job, jobTemplate: /tmp/job.yaml, "
            "liveGarbageCollect: true}\n",
            "conf.yaml",
        )
        .registry()
        .reclaim
    )
    assert ok.mode == "kubernetes-job" and ok.live_garbage_collect


def test_reclaim_read_only_without_read_write_is_refused():
    msg = _err(RECLAIM + RO + GC)
    assert "conf.yaml:6: mirrorRepositories[0].reclaim.readWrite:" in msg
    assert "never closes" in msg
    # the acknowledgement does not excuse a window that never closes
    assert "reclaim.readWrite" in _err(RECLAIM + RO + GC + "    liveGarbageCollect: true\n")
    job = BASE + "  reclaim: {mode: kubernetes-job, jobTemplate: /tmp/job.yaml, readOnly: [a]}\n"
    assert "mirrorRepositories[0].reclaim.readWrite:" in _err(job)


def test_reclaim_examples_pass_the_safety_rules():
    demo = (EXAMPLE.parent / "demo" / "regkeeper.yaml").read_text()
    demo = re.sub(
        r"\{\{(\w+)\}\}", lambda m: "http://127.0.0.1:5000" if m.group(1).endswith("URL") else "/tmp/x", demo
    )
    rc = parse_config(demo, "demo.yaml").registry("demo-registry").reclaim
    assert rc.mode == "command" and rc.live_garbage_collect
    rc = load_config(EXAMPLE).registry("local-registry").reclaim
    assert rc.read_only and rc.read_write and not rc.live_garbage_collect


# --------------------------------------------------------------------------- replication cap


def test_replication_rule_has_its_own_delete_cap():
    two = BASE + "- name: replica\n  url: http://127.0.0.1:5001\n"
    cfg = parse_config(two + "replication: [{from: local-registry, to: replica}]\n", "conf.yaml")
    assert cfg.replication[0].max_delete_fraction == 0.5
    cfg = parse_config(
        two + "gc: {maxDeleteFraction: 0.9}\nreplication: [{from: local-registry, "
        "to: replica, deleteExtraneous: true, maxDeleteFraction: 0.2}]\n",
        "conf.yaml",
    )
    assert cfg.replication[0].max_delete_fraction == 0.2 and cfg.gc.max_delete_fraction == 0.9
    assert cfg.replication[0].model_dump(by_alias=True)["maxDeleteFraction"] == 0.2
    for bad in ("0", "1.5", "-0.1"):
        msg = _err(two + f"replication:\n- {{from: local-registry, to: replica, maxDeleteFraction: {bad}}}\n")
        assert "conf.yaml:8: replication[0].maxDeleteFraction" in msg
    assert (
        parse_config(
            two + "replication: [{from: local-registry, to: replica, maxDeleteFraction: 1}]\n", "conf.yaml"
        )
        .replication[0]
        .max_delete_fraction
        == 1.0
    )
