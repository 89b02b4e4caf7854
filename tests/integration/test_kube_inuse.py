"""read_in_use against a recorded API server over real HTTP(S), through a kubeconfig and the
official ``kubernetes`` client: every kind, pagination, failing contexts and resources."""

import json
import logging
import time
import types

import pytest

from regkeeper.kube import KubeReadError, load_snapshot, read_in_use, registry_hosts, scan_from_config
from tests.support.kubeapi import FAKE_TOKEN, FIXTURES, KubeApiServer, synthetic_pods, write_kubeconfig
from tests.support.procs import free_port

REG_PORT = free_port()
REGISTRY = f"127.0.0.1:{REG_PORT}"
SUBS = {"{{REGISTRY}}": REGISTRY, "{{REGISTRY_PORT}}": str(REG_PORT)}
D = {c: "sha256:" + c * 64 for c in "123456789abcde"}
ALL = ("pods", "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs")
FAST = dict(request_timeout=5, retries=2, backoff=0.05)  # keep failing paths quick


@pytest.fixture(scope="module")
def api():
    srv = KubeApiServer(FIXTURES, substitutions=SUBS)
    yield srv
    srv.stop()


@pytest.fixture
def fresh_api(api):
    """The module server with faults cleared and request log emptied before and after a test."""
    api.clear_faults()
    api.requests.clear()
    yield api
    api.clear_faults()


@pytest.fixture
def kubeconfig(tmp_path, fresh_api):
    return str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": fresh_api}))


def _keyset(scan):
    return {(r.canonical, s.namespace, s.kind, s.name, s.container, s.field) for r, s in scan.refs}


def test_reads_every_kind_with_sources(kubeconfig, fresh_api):
    scan = read_in_use(kubeconfig, ["prod"])
    assert scan.ok, scan.errors
    assert scan.contexts_read == ["prod"]
    assert scan.objects["prod"] == {
        "pods": 11,
        "deployments": 4,
        "statefulsets": 1,
        "daemonsets": 1,
        "replicasets": 5,
        "jobs": 1,
        "cronjobs": 1,
    }
    got = _keyset(scan)
    R = REGISTRY
    expected = {
        # CronJob, by digest only
        (
            f"{R}/team-b/report@{D['2']}",
            "batch",
            "CronJob",
            "nightly-report",
            "report",
            "spec.jobTemplate.spec.template.spec.containers[0].image",
        ),
        # Deployment template: container, alias-host sidecar, initContainer
        (
            f"{R}/team-a/web:1.4.2",
            "shop",
            "Deployment",
            "web",
            "app",
            "spec.template.spec.containers[0].image",
        ),
        (
            "registry.local:5000/team-a/envoy:v1.29.1",
            "shop",
            "Deployment",
            "web",
            "envoy",
            "spec.template.spec.containers[1].image",
        ),
        (
            f"{R}/tools/wait-for:3",
            "shop",
            "Deployment",
            "web",
            "wait-for-db",
            "spec.template.spec.initContainers[0].image",
        ),
        # old ReplicaSet (rollback history)
        (
            f"{R}/team-a/web:1.4.1",
            "shop",
            "ReplicaSet",
            "web-5f8b7c9d4",
            "app",
            "spec.template.spec.containers[0].image",
        ),
        # StatefulSet repo:tag@digest, Docker Hub initContainer
        (
            f"{R}/base/postgres:16.2@{D['3']}",
            "data",
            "StatefulSet",
            "db",
            "postgres",
            "spec.template.spec.containers[0].image",
        ),
        (
            "docker.io/library/busybox:1.36",
            "data",
            "StatefulSet",
            "db",
            "fix-perms",
            "spec.template.spec.initContainers[0].image",
        ),
        # DaemonSet through the alias host only
        (
            "registry.local:5000/base/node-exporter:v1.7.0",
            "monitoring",
            "DaemonSet",
            "node-exporter",
            "node-exporter",
            "spec.template.spec.containers[0].image",
        ),
        # Job
        (
            f"{R}/team-a/migrate:2024.06.01",
            "shop",
            "Job",
            "migrate-20240601",
            "migrate",
            "spec.template.spec.containers[0].image",
        ),
        # Pod: ephemeral container and its status
        (
            f"{R}/tools/netshoot:v0.12",
            "shop",
            "Pod",
            "checkout-debug",
            "debugger-x7k2p",
            "spec.ephemeralContainers[0].image",
        ),
        (
            f"{R}/tools/netshoot@{D['9']}",
            "shop",
            "Pod",
            "checkout-debug",
            "debugger-x7k2p",
            "status.ephemeralContainerStatuses[0].imageID",
        ),
        # Pod: running digest known only from status (docker-pullable:// stripped)
        (
            f"{R}/team-c/api@{D['4']}",
            "api",
            "Pod",
            "api-6b8d9c7f5-zt4wn",
            "api",
            "status.containerStatuses[0].imageID",
        ),
        (
            f"{R}/tools/wait-for@{D['a']}",
            "shop",
            "Pod",
            "web-7d9c8f6b5-x2k9p",
            "wait-for-db",
            "status.initContainerStatuses[0].imageID",
        ),
        # Docker Hub short names, normalised
        (
            "docker.io/library/nginx:latest",
            "frontend",
            "Deployment",
            "frontend",
            "nginx",
            "spec.template.spec.containers[0].image",
        ),
        (
            "docker.io/library/alpine:3.19",
            "frontend",
            "Pod",
            "frontend-5d7c9b8f6-mm2wd",
            "log-shipper",
            "spec.containers[1].image",
        ),
        (
            f"docker.io/library/nginx@{D['6']}",
            "frontend",
            "Pod",
            "frontend-5d7c9b8f6-mm2wd",
            "nginx",
            "status.containerStatuses[0].imageID",
        ),
        (
            f"docker.io/library/busybox@{D['7']}",
            "data",
            "Pod",
            "db-0",
            "fix-perms",
            "status.initContainerStatuses[0].imageID",
        ),
    }
    missing = expected - got
    assert not missing, missing
    assert all(s.context == "prod" for _, s in scan.refs)
    assert len(scan.refs) == 55
    assert [i.value for i in scan.invalid] == [f"{R}/Team-A/Web:1.0"]

    # every list call: all namespaces, paginated, authenticated
    by_res = {r["resource"] for r in fresh_api.requests}
    assert by_res == set(ALL)
    for r in fresh_api.requests:
        assert r["query"].get("limit") == "500" and r["authorized"] and r["status"] == 200, r

    # the live reader and the snapshot loader agree (same parsing code)
    snap = load_snapshot(FIXTURES, substitutions=SUBS, context="prod")
    assert _keyset(snap) == got


def test_registry_usage_end_to_end_with_alias(kubeconfig):
    scan = read_in_use(kubeconfig, None)
    with_alias = scan.for_registry(registry_hosts(f"http://{REGISTRY}", ["registry.local:5000"]))
    no_alias = scan.for_registry(registry_hosts(f"http://{REGISTRY}"))

    assert with_alias.digests_in_use("team-a/envoy") == {
        D["5"]: with_alias.digests_in_use("team-a/envoy")[D["5"]]
    }
    assert no_alias.tags_in_use("team-a/envoy") == {} and no_alias.digests_in_use("base/node-exporter") == {}
    assert set(with_alias.tags_in_use("base/node-exporter")) == {"v1.7.0"}

    u = with_alias
    # tag in use protects the digest it points at now; 1.4.0 is not used anywhere
    assert {s.kind for s in u.is_protected("team-a/web", "1.4.2", D["e"])} == {
        "Deployment",
        "ReplicaSet",
        "Pod",
    }
    assert u.is_protected("team-a/web", "1.4.0", D["d"]) == []
    # the digest the api pod runs (tag 'stable' moved on since) is protected under any tag
    srcs = u.is_protected("team-c/api", "stable-2024-05", D["4"])
    assert [s.field for s in srcs] == ["status.containerStatuses[0].imageID"]
    # the CronJob digest protects every tag on it; no tag of team-b/report is in use
    assert u.is_protected("team-b/report", "v3", D["2"])[0].kind == "CronJob"
    assert u.is_protected("team-b/report", "v3", D["1"]) == []
    # initContainer-only and ephemeral-only images are protected
    assert u.is_protected("tools/wait-for", "3", D["d"]) and u.is_protected("tools/netshoot", "v0.12", D["d"])
    # look-alikes are not ours: localhost:<same port>, Docker Hub team-a/web, the invalid upper-case one
    assert "0.9" not in u.tags_in_use("team-a/web")
    assert set(u.tags_in_use("team-a/web")) == {"1.4.2", "1.4.1"}
    assert "Team-A/Web" not in u.repositories()


def test_pagination_many_pages(tmp_path):
    images = [f"{REGISTRY}/team-x/svc-{i}:v{i}" for i in range(37)]
    pods = synthetic_pods(1234, images)
    with KubeApiServer({"pods": pods}) as srv:
        kc = write_kubeconfig(tmp_path / "kc", {"big": srv})
        scan = read_in_use(str(kc), ["big"], page_size=100)
        pod_reqs = srv.requests_for("pods")
    assert scan.ok, scan.errors
    assert scan.objects["big"]["pods"] == 1234
    assert len(scan.refs) == 2 * 1234  # spec image + status imageID each
    assert len({s.name for _, s in scan.refs}) == 1234  # no page read twice, none skipped
    assert [r["page"] for r in pod_reqs] == [(i, min(i + 100, 1234)) for i in range(0, 1234, 100)]
    assert "continue" not in pod_reqs[0]["query"]
    assert all(r["query"].get("continue") for r in pod_reqs[1:])
    assert all(r["query"]["limit"] == "100" for r in pod_reqs)
    u = scan.for_registry([REGISTRY])
    assert set(u.repositories()) == {f"team-x/svc-{i}" for i in range(37)}


def test_pagination_over_fixture_pages_and_expired_continue_restarts(kubeconfig, fresh_api):
    fresh_api.expire_continue("pods")  # 410 on the first continued request
    scan = read_in_use(kubeconfig, ["prod"], page_size=3)
    assert scan.ok, scan.errors
    assert scan.objects["prod"]["pods"] == 11  # restarted from scratch, no duplicates
    expected = load_snapshot(FIXTURES, substitutions=SUBS, context="prod")
    assert len(scan.refs) == len(expected.refs) and _keyset(scan) == _keyset(expected)
    assert len(scan.invalid) == 1
    statuses = [(r["page"] if r["status"] == 200 else r["status"]) for r in fresh_api.requests_for("pods")]
    assert statuses == [(0, 3), 410, (0, 3), (3, 6), (6, 9), (9, 11)]
    assert len(fresh_api.requests_for("replicasets")) == 2  # 5 items, pages of 3


def test_two_contexts_one_fails_with_500(tmp_path, fresh_api):
    with KubeApiServer(FIXTURES, substitutions=SUBS) as broken:
        broken.fail("pods", 500)
        kc = write_kubeconfig(tmp_path / "kc", {"prod": fresh_api, "staging": broken})
        scan = read_in_use(str(kc), ["prod", "staging"], **FAST)
        staging_pod_calls = len(broken.requests_for("pods"))
    assert scan.contexts_read == ["prod"]
    assert [(e.context, e.resource, e.status) for e in scan.errors] == [("staging", "pods", 500)]
    reason = scan.errors[0].reason
    assert "HTTP 500" in reason and "pods" in reason and "etcdserver: request timed out" in reason
    assert broken.url in reason
    assert staging_pod_calls == 1  # 500 is permanent (regkeeper.retry)
    assert scan.objects["prod"]["pods"] == 11
    assert any(s.context == "prod" and s.kind == "Pod" for _, s in scan.refs)
    assert not any(s.context == "staging" and s.kind == "Pod" for _, s in scan.refs)
    with pytest.raises(KubeReadError) as ei:
        scan.raise_if_incomplete()
    assert "'staging'" in str(ei.value) and "HTTP 500" in str(ei.value) and "'prod'" not in str(ei.value)


def test_403_on_one_resource_names_it_and_is_not_retried(kubeconfig, fresh_api):
    fresh_api.fail("deployments", 403)
    scan = read_in_use(kubeconfig, ["prod"], **FAST)
    assert scan.contexts_read == []
    assert len(scan.errors) == 1
    e = scan.errors[0]
    assert (e.context, e.resource, e.status) == ("prod", "deployments.apps", 403)
    assert "HTTP 403 Forbidden listing deployments.apps (GET /apis/apps/v1/deployments)" in e.reason
    assert 'cannot list resource "deployments" in API group "apps"' in e.reason
    assert len(fresh_api.requests_for("deployments")) == 1  # permanent: not retried
    # the other resources of the context were still read
    assert scan.objects["prod"].get("pods") == 11 and "deployments" not in scan.objects["prod"]


def _retry_logs(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "regkeeper.kube" and r.levelno == logging.WARNING and "retrying in" in r.getMessage()
    ]


def test_transient_failures_are_retried_by_the_one_decision_and_logged(kubeconfig, fresh_api, caplog):
    """503 then 200, and a connection reset in the middle of a 200 body then 200: the list
    call (request, body read, parse) is retried as one and the context reads completely."""
    clean = read_in_use(kubeconfig, ["prod"], **FAST)
    fresh_api.requests.clear()
    fresh_api.fail("pods", 503, times=1)
    fresh_api.cut("deployments", part=0.5, times=1)
    with caplog.at_level(logging.WARNING, logger="regkeeper.kube"):
        scan = read_in_use(kubeconfig, ["prod"], **FAST)
    assert scan.ok and scan.errors == [], scan.errors
    assert scan.objects == clean.objects and _keyset(scan) == _keyset(clean)
    assert [r["status"] for r in fresh_api.requests_for("pods")] == [503, 200]
    assert [r["status"] for r in fresh_api.requests_for("deployments")] == ["reset mid-body", 200]
    logs = _retry_logs(caplog)
    assert any(
        "'prod'" in m and "GET /api/v1/pods" in m and "HTTP 503" in m and "attempt 1/3" in m for m in logs
    ), logs
    assert any(
        "GET /apis/apps/v1/deployments" in m and "connection broke while reading the response" in m
        for m in logs
    ), logs
    assert len(logs) == 2 and not any(FAKE_TOKEN in m for m in logs)


def test_permanent_status_is_not_retried_nor_logged_as_a_retry(kubeconfig, fresh_api, caplog):
    fresh_api.fail("statefulsets", 403)
    with caplog.at_level(logging.WARNING, logger="regkeeper.kube"):
        scan = read_in_use(kubeconfig, ["prod"], **FAST)
    assert [(e.resource, e.status) for e in scan.errors] == [("statefulsets.apps", 403)]
    assert len(fresh_api.requests_for("statefulsets")) == 1
    assert _retry_logs(caplog) == []


def test_unreachable_server_names_the_context_once(tmp_path, fresh_api, dead_port):
    dead = f"http://127.0.0.1:{dead_port}"
    kc = write_kubeconfig(tmp_path / "kc", {"prod": fresh_api, "dr": dead})
    t0 = time.monotonic()
    scan = read_in_use(str(kc), ["dr", "prod"], **FAST)
    assert time.monotonic() - t0 < 20
    assert scan.contexts_read == ["prod"]
    assert len(scan.errors) == 1  # one error, not one per resource
    e = scan.errors[0]
    assert e.context == "dr" and e.status is None and e.resource is None
    assert "cannot connect to API server" in e.reason and dead in e.reason and "refused" in e.reason


def test_dropped_connection_and_read_timeout_name_resource(kubeconfig, fresh_api):
    fresh_api.drop("jobs")
    # a 2 s read timeout (0.5 s timed out healthy resources too on a loaded machine: the
    # server's threads share this process) against a 30 s stall: cut short, or the run takes 60 s
    fresh_api.stall("cronjobs", 30.0)
    t0 = time.monotonic()
    scan = read_in_use(kubeconfig, ["prod"], request_timeout=(5, 2), retries=1, backoff=0.01)
    assert time.monotonic() - t0 < 25
    errs = {e.resource: e for e in scan.errors}
    assert set(errs) == {"jobs.batch", "cronjobs.batch"}
    assert (
        "connection dropped" in errs["jobs.batch"].reason
        and "/apis/batch/v1/jobs" in errs["jobs.batch"].reason
    )
    assert "read timed out after 2.0s" in errs["cronjobs.batch"].reason
    assert len(fresh_api.requests_for("jobs")) == 2  # retried once
    assert scan.contexts_read == []


def test_bad_context_name_and_current_context(tmp_path, fresh_api):
    kc = write_kubeconfig(tmp_path / "kc", {"prod": fresh_api, "staging": fresh_api}, current="staging")
    scan = read_in_use(str(kc), ["prod", "nope"])
    assert scan.contexts_read == ["prod"]
    assert [e.context for e in scan.errors] == ["nope"]
    assert "context 'nope' not found in kubeconfig" in scan.errors[0].reason
    assert "prod, staging" in scan.errors[0].reason
    # no contexts: the current context, by name
    scan = read_in_use(str(kc), None)
    assert scan.ok and scan.contexts_read == ["staging"]
    assert {s.context for _, s in scan.refs} == {"staging"}
    # no current-context and no contexts list: say so
    kc2 = write_kubeconfig(tmp_path / "kc2", {"prod": fresh_api}, current="")
    scan = read_in_use(str(kc2), [])
    assert not scan.ok and "has no current-context" in scan.errors[0].reason
    # kubeconfig file that does not exist
    scan = read_in_use(str(tmp_path / "missing"), ["prod"])
    assert scan.errors[0].context == "prod" and "kubeconfig file not found" in scan.errors[0].reason


def test_kubeconfig_lookup_order(tmp_path, monkeypatch, fresh_api):
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    scan = read_in_use(None, None)
    assert not scan.ok and "no kubeconfig" in scan.errors[0].reason
    write_kubeconfig(home / ".kube" / "config", {"from-home": fresh_api})
    assert read_in_use(None, None).contexts_read == ["from-home"]
    env_kc = write_kubeconfig(tmp_path / "env-kc", {"from-env": fresh_api})
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{env_kc}")  # missing entries are skipped
    assert read_in_use(None, None).contexts_read == ["from-env"]
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    scan = read_in_use(None, ["x"])
    assert scan.errors[0].context == "x" and "KUBECONFIG names no existing file" in scan.errors[0].reason


def test_tls_kubeconfig_and_in_cluster(tmp_path, monkeypatch):
    import kubernetes.config.incluster_config as incluster

    with (
        KubeApiServer(FIXTURES, substitutions=SUBS, tls=True) as tls_srv,
        KubeApiServer(FIXTURES, substitutions=SUBS, tls=True) as other,
    ):
        kc = write_kubeconfig(tmp_path / "kc", {"tls": tls_srv})
        scan = read_in_use(str(kc), ["tls"], **FAST)
        assert scan.ok, scan.errors
        assert scan.objects["tls"]["pods"] == 11

        # the wrong CA: a TLS failure, named, for that context
        bad = tmp_path / "bad-kc"
        bad.write_text(kc.read_text().replace(tls_srv.url, other.url))
        scan = read_in_use(str(bad), ["tls"], **FAST)
        assert [e.context for e in scan.errors] == ["tls"] and "TLS" in scan.errors[0].reason

        # in-cluster: no kubeconfig anywhere, a service account token and CA, KUBERNETES_SERVICE_*
        sa = tmp_path / "sa"
        sa.mkdir()
        (sa / "token").write_text(tls_srv.token)
        (sa / "ca.crt").write_bytes(tls_srv.ca_pem)
        monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
        monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
        monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(tls_srv.port))
        tls_srv.requests.clear()
        scan = read_in_use(None, None, **FAST)
        assert scan.ok, scan.errors
        assert scan.contexts_read == ["in-cluster"] and scan.objects["in-cluster"]["pods"] == 11
        assert tls_srv.requests and all(r["authorized"] for r in tls_srv.requests)
        # contexts cannot be chosen in-cluster without a kubeconfig
        scan = read_in_use(None, ["prod"])
        assert scan.errors[0].context == "prod" and "in-cluster" in scan.errors[0].reason


def test_token_never_logged_or_reported(tmp_path, fresh_api, caplog, dead_port):
    caplog.set_level(logging.DEBUG)
    fresh_api.fail("statefulsets", 403)
    wrong = KubeApiServer(FIXTURES, substitutions=SUBS, token="a-different-token")
    try:
        kc = write_kubeconfig(
            tmp_path / "kc",
            {"prod": fresh_api, "wrongtoken": wrong.url, "dead": f"http://127.0.0.1:{dead_port}"},
        )
        scan = read_in_use(str(kc), ["prod", "wrongtoken", "dead", "missing"], **FAST)
    finally:
        wrong.stop()
    token = fresh_api.token
    assert token and len(token) > 20
    errs = {e.context: e for e in scan.errors}
    assert set(errs) == {"prod", "wrongtoken", "dead", "missing"}
    assert errs["wrongtoken"].status == 401 and "Unauthorized" in errs["wrongtoken"].reason
    # the server saw the bearer token on every request of the good context
    assert fresh_api.requests and all(r["authorized"] for r in fresh_api.requests)
    everything = "\n".join(
        [caplog.text, scan.to_json(), scan.summary(), scan.failure_message(), repr(scan), repr(fresh_api)]
    )
    assert token not in everything
    assert "Bearer" not in everything
    assert "Unauthorized" in caplog.text or "401" in caplog.text  # failures were logged, without secrets


def test_scan_from_config_snapshot_and_live(tmp_path, fresh_api):
    from regkeeper.config import KubernetesConfig

    kc = write_kubeconfig(tmp_path / "kc", {"prod": fresh_api, "staging": fresh_api})
    cfg = KubernetesConfig.model_validate({"kubeconfig": str(kc), "contexts": ["prod", "staging"]})
    scan = scan_from_config(cfg)
    assert scan.ok and scan.contexts_read == ["prod", "staging"] and len(scan.refs) == 110

    snap = tmp_path / "scan.json"
    snap.write_text(scan.to_json())
    assert scan_from_config(KubernetesConfig.model_validate({"snapshot": str(snap)})).refs == scan.refs
    missing = scan_from_config(KubernetesConfig.model_validate({"snapshot": str(tmp_path / "nope.json")}))
    assert not missing.ok and "not found" in missing.errors[0].reason


def test_gc_state_is_restored(kubeconfig, fresh_api):
    import gc

    assert gc.isenabled()
    fresh_api.fail("daemonsets", 503, times=1)  # an error path inside a page, too
    assert read_in_use(kubeconfig, ["prod"], **FAST).ok
    assert gc.isenabled()
    gc.disable()
    try:
        assert read_in_use(kubeconfig, ["prod"], **FAST).ok
        assert not gc.isenabled()  # we never turn on what the caller turned off
    finally:
        gc.enable()


# --------------------------------------------------------------------------------------------
# malformed objects: the context fails, naming the object and the field; other contexts are read
# --------------------------------------------------------------------------------------------
BAD_DEPLOYMENT = {
    "metadata": {"name": "web", "namespace": "team-a"},
    "spec": {"template": {"spec": {"containers": [f"{REGISTRY}/team-a/web:1"]}}},
}
BAD_CRONJOB = {
    "metadata": {"name": "nightly", "namespace": "batch"},
    "spec": {"jobTemplate": {"spec": {"template": [{"spec": {}}]}}},
}
BAD_DEPLOYMENT_MSG = (
    "context 'staging': Deployment team-a/web: spec.template.spec.containers[0] "
    "is a string, expected an object"
)
BAD_CRONJOB_MSG = (
    "context 'staging': CronJob batch/nightly: spec.jobTemplate.spec.template is a list, expected an object"
)


@pytest.fixture
def malformed_staging(tmp_path, fresh_api):
    """prod: the recorded fixtures; staging: the same plus a malformed Deployment and CronJob."""
    with KubeApiServer(FIXTURES, substitutions=SUBS) as staging:
        staging.set_response("deployments", staging.items("deployments") + [BAD_DEPLOYMENT])
        staging.set_response("cronjobs", staging.items("cronjobs") + [BAD_CRONJOB])
        yield write_kubeconfig(tmp_path / "kc", {"prod": fresh_api, "staging": staging}), staging


def test_malformed_objects_fail_their_context_naming_kind_object_and_field(malformed_staging):
    kc, staging = malformed_staging
    scan = read_in_use(str(kc), ["prod", "staging"], **FAST)

    assert scan.contexts_read == ["prod"] and scan.contexts_failed == ["staging"]
    assert [str(e) for e in scan.errors] == [BAD_DEPLOYMENT_MSG, BAD_CRONJOB_MSG]
    assert [(e.resource, e.status) for e in scan.errors] == [
        ("deployments.apps", None),
        ("cronjobs.batch", None),
    ]
    assert not any("AttributeError" in e.reason for e in scan.errors)
    assert len(staging.requests_for("deployments")) == 1  # a shape problem: not retried

    # the valid context next to it is read completely
    assert scan.objects["prod"] == {
        "pods": 11,
        "deployments": 4,
        "statefulsets": 1,
        "daemonsets": 1,
        "replicasets": 5,
        "jobs": 1,
        "cronjobs": 1,
    }
    assert sum(1 for _, s in scan.refs if s.context == "prod") == 55
    # the failed context's other lists, and the readable objects of the malformed ones, still protect
    assert scan.objects["staging"]["pods"] == 11 and "deployments" not in scan.objects["staging"]
    staging_dep = {
        (s.namespace, s.name) for _, s in scan.refs if s.context == "staging" and s.kind == "Deployment"
    }
    assert ("shop", "web") in staging_dep and ("team-a", "web") not in staging_dep

    # fail-closed: the refusal says exactly which object and field
    with pytest.raises(KubeReadError) as ei:
        scan.raise_if_incomplete()
    msg = str(ei.value)
    assert BAD_DEPLOYMENT_MSG in msg and BAD_CRONJOB_MSG in msg
    assert "failClosed" in msg and "'prod'" not in msg


def test_malformed_object_makes_gc_and_expire_refuse_when_fail_closed(malformed_staging, tmp_path):
    from regkeeper.config import load_config
    from regkeeper.errors import RefusedError
    from regkeeper.prune import read_kubernetes

    kc, _ = malformed_staging

    def ctx(fail_closed: bool):
        cfg = tmp_path / f"regkeeper-{fail_closed}.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "mirrorRepositories": [
                        {"name": "local-registry", "type": "local", "url": f"http://{REGISTRY}"}
                    ],
                    "kubernetes": {
                        "kubeconfig": str(kc),
                        "contexts": ["prod", "staging"],
                        "failClosed": fail_closed,
                        "timeout": "5s",
                    },
                }
            )
        )
        return types.SimpleNamespace(config=load_config(cfg))

    with pytest.raises(RefusedError) as ei:
        read_kubernetes(ctx(True), "local-registry")
    msg = str(ei.value)
    assert BAD_DEPLOYMENT_MSG in msg and "nothing is deleted" in msg
    # fail-closed off: the run goes on, and its notes say what could not be read
    state = read_kubernetes(ctx(False), "local-registry")
    assert any(BAD_DEPLOYMENT_MSG in n and "WITHOUT protection" in n for n in state.notes)
    assert state.usage.tags_in_use("team-a/web")


def test_list_items_of_the_wrong_shape_are_named(tmp_path):
    with KubeApiServer({"pods": ["not-a-pod"], "jobs": [{"metadata": "x", "spec": {}}]}) as srv:
        kc = write_kubeconfig(tmp_path / "kc", {"odd": srv})
        scan = read_in_use(str(kc), ["odd"], **FAST)
    assert {e.resource: str(e) for e in scan.errors} == {
        "pods": "context 'odd': Pod items[0] is a string, expected an object",
        "jobs.batch": "context 'odd': Job items[0]: metadata is a string, expected an object",
    }
    assert scan.contexts_read == []


def test_scan_from_config_malformed_snapshot_names_file_context_and_field(tmp_path):
    from regkeeper.config import KubernetesConfig

    good = json.loads((FIXTURES / "deployments.json").read_text().replace("{{REGISTRY}}", REGISTRY))
    snap = tmp_path / "clusters.json"
    snap.write_text(
        json.dumps(
            {
                "contexts": {
                    "prod": {"deployments": good},
                    "staging": {"deployments": {"kind": "DeploymentList", "items": [BAD_DEPLOYMENT]}},
                }
            }
        )
    )
    scan = scan_from_config(KubernetesConfig.model_validate({"snapshot": str(snap)}))
    assert scan.contexts_read == ["prod"] and scan.contexts_failed == ["staging"]
    (err,) = scan.errors
    assert str(err) == (
        f"context 'staging': Kubernetes snapshot {snap}[contexts][staging][deployments]: "
        f"Deployment team-a/web: spec.template.spec.containers[0] is a string, "
        f"expected an object"
    )
    assert any(s.context == "prod" and s.name == "web" for _, s in scan.refs)
    with pytest.raises(KubeReadError, match=r"clusters\.json.*Deployment team-a/web.*containers\[0\]"):
        scan.raise_if_incomplete()
