"""Errors that name nothing never reach the user's last line.

``regkeeper run gc`` as a user runs it (a subprocess), its registry behind the fault proxy:
garbage JSON from ``_catalog`` or from a tags list, a reset in the middle of a manifest body
that outlasts every attempt, a malformed Kubernetes object with failClosed. The run exits
non-zero; its LAST stderr line names the registry, the call (method + path) or repository and
says what happened; no bare library exception name or traceback; nothing was deleted.
"""

import datetime as dt

import pytest

from tests.integration.test_cli import rk
from tests.support import images
from tests.support.kubeapi import FIXTURES, KubeApiServer, write_kubeconfig
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, truth

OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(days=90)).timestamp()
FOREVER = 10_000
BARE = ("Traceback", "JSONDecodeError:", "ChunkedEncodingError", "ValueError:", "KeyError")


@pytest.fixture
def old_tags(registry_factory):
    """A registry whose every tag but the newest per repository is old: gc would delete."""
    reg = registry_factory()
    for repo in ("cli/a", "cli/b"):
        for i in range(3):
            images.push_image(reg.url, repo, f"v{i}", seed=f"{repo}{i}", verify=False)
        age(reg.root, repo, ["v0", "v1"], OLD)
    return reg


def run_gc(reg, proxy, tmp_path, prefect, **sections):
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, url=proxy.url, reclaim="none", retries=2)],
        gc={"registry": "local-registry", "days": 30, "keepLast": 1},
        **sections,
    )
    return rk("run", "gc", "--config", str(cfg), prefect=prefect)


def last_line(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert lines, out
    return lines[-1]


def assert_named_failure(out, *must):
    last = last_line(out)
    assert out.returncode != 0, (out.returncode, out.stderr[-3000:])
    for m in must:
        assert m in last, (m, last, out.stderr[-3000:])
    for bare in BARE:
        assert bare not in last, (bare, last)
    return last


@pytest.mark.parametrize("where,path", [("catalog", "GET /v2/_catalog"), ("tags", "GET /v2/cli/b/tags/list")])
def test_garbage_json_names_registry_call_and_what(
    old_tags, fault_proxy_factory, tmp_path, prefect_api, where, path
):
    proxy = fault_proxy_factory(old_tags.url)
    rx = r"^/v2/_catalog" if where == "catalog" else r"^/v2/cli/b/tags/list"
    proxy.add_fault("garbage", method="GET", path_regex=rx, times=FOREVER)
    before = truth(old_tags.url)

    out = run_gc(old_tags, proxy, tmp_path, prefect_api)

    last = assert_named_failure(out, "registry 'local-registry'", path, "not valid JSON", "after 3 attempts")
    assert out.returncode == 1, last
    assert truth(old_tags.url) == before  # nothing deleted


def test_reset_mid_body_beyond_the_attempts_names_the_manifest_call(
    old_tags, fault_proxy_factory, tmp_path, prefect_api
):
    proxy = fault_proxy_factory(old_tags.url)
    proxy.add_fault("reset_body", method="GET", path_regex=r"^/v2/cli/a/manifests/v1$", times=FOREVER)
    before = truth(old_tags.url)

    out = run_gc(old_tags, proxy, tmp_path, prefect_api)

    assert_named_failure(
        out, "registry 'local-registry'", "GET /v2/cli/a/manifests/v1", "connection broke", "after 3 attempts"
    )
    assert out.returncode == 1
    assert truth(old_tags.url) == before


def test_malformed_kubernetes_object_fail_closed_refuses_naming_object_and_field(
    old_tags, fault_proxy_factory, tmp_path, prefect_api
):
    proxy = fault_proxy_factory(old_tags.url)
    bad = {
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"template": {"spec": {"containers": [f"{old_tags.host}/cli/a:v0"]}}},
    }
    with KubeApiServer(
        FIXTURES, substitutions={"{{REGISTRY}}": old_tags.host, "{{REGISTRY_PORT}}": str(old_tags.port)}
    ) as api:
        api.set_response("deployments", api.items("deployments") + [bad])
        kc = write_kubeconfig(tmp_path / "kc", {"staging": api})
        before = truth(old_tags.url)
        out = run_gc(
            old_tags,
            proxy,
            tmp_path,
            prefect_api,
            kubernetes={"kubeconfig": str(kc), "contexts": ["staging"], "failClosed": True, "timeout": "5s"},
        )

    last = assert_named_failure(
        out, "refused", "context 'staging'", "Deployment team-a/web", "spec.template.spec.containers[0]"
    )
    assert out.returncode == 3, last
    assert truth(old_tags.url) == before


def test_replicate_last_line_names_the_failed_items(
    registry_factory, fault_proxy_factory, tmp_path, prefect_api
):
    src, dst = registry_factory(), registry_factory()
    for i in range(3):
        images.push_image(src.url, "cli/r", f"v{i}", seed=f"r{i}", verify=False)
    sproxy, dproxy = fault_proxy_factory(src.url), fault_proxy_factory(dst.url)
    dproxy.add_fault(
        "status", status=403, method="PUT", path_regex=r"^/v2/cli/r/manifests/v1$", times=FOREVER
    )
    sproxy.add_fault("reset_body", method="GET", path_regex=r"^/v2/cli/r/manifests/v2$", times=FOREVER)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [
            registry_entry(src, url=sproxy.url, retries=2, storage=False),
            registry_entry(dst, "replica", url=dproxy.url, retries=2, storage=False),
        ],
        replication=[{"from": "local-registry", "to": ["replica"]}],
    )

    out = rk("run", "replicate", "--config", str(cfg), prefect=prefect_api)

    last = assert_named_failure(
        out,
        "2 item(s) failed",
        "cli/r:v1: registry 'replica'",
        "HTTP 403",
        "PUT /v2/cli/r/manifests/v1",
        "cli/r:v2: source digest unreadable: registry 'local-registry'",
        "GET /v2/cli/r/manifests/v2",
        "connection broke",
        "after 3 attempts",
    )
    assert out.returncode == 1, last
    assert images.list_tags(dst.url, "cli/r", verify=False) == ["v0"]  # the rest was copied


def test_backup_last_line_names_the_unreadable_tag(
    registry_factory, fault_proxy_factory, tmp_path, prefect_api
):
    reg = registry_factory()
    for i in range(3):
        images.push_image(reg.url, "cli/k", f"v{i}", seed=f"k{i}", verify=False)
    proxy = fault_proxy_factory(reg.url)
    proxy.add_fault("status", status=403, method="GET", path_regex=r"^/v2/cli/k/manifests/v1$", times=FOREVER)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, url=proxy.url, retries=2, storage=False)],
        backup={"target": f"file://{tmp_path / 'bk'}"},
    )

    out = rk("run", "backup", "--config", str(cfg), prefect=prefect_api)

    last = assert_named_failure(
        out,
        "backup failed",
        "1 item(s) could not be backed up",
        "cli/k:v1: registry 'local-registry'",
        "HTTP 403",
        "GET /v2/cli/k/manifests/v1",
    )
    assert out.returncode == 1, last
    files = lambda d: [f for f in (tmp_path / "bk" / d).rglob("*") if f.is_file()]  # noqa: E731
    assert files("snapshots") == []  # no snapshot claims it all
    assert len(files("manifests")) == 2 and len(files("blobs")) == 2  # v0 and v2 were copied
