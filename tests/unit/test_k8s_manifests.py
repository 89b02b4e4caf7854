"""The Kubernetes manifests parse, and the ClusterRole grants exactly what the in-use read uses.

The RBAC check is two-sided: the rules are compared with ``regkeeper.kube.RESOURCES`` (what
``read_in_use`` lists), and ``read_in_use`` is run against a recorded API server on loopback
whose every request is then authorised against the ClusterRole the way kube-apiserver's RBAC
authoriser does (group + resource + verb, cluster scope).
"""

import json
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from regkeeper import kube

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deployments" / "kubernetes"

# what the in-use read needs: get/list/watch, cluster-wide, on exactly these
EXPECTED = {
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}
READ_VERBS = {"get", "list", "watch"}


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d.get("kind") == kind]


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), "no resourceNames: the read lists every object"
        assert not rule.get("nonResourceURLs")
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                out[(g, r)].update(rule["verbs"])
    return dict(out)


def authorized(role: dict, group: str, resource: str, verb: str) -> bool:
    """kube-apiserver's RBAC rule match (no wildcards are expected; they would match here too)."""
    for rule in role["rules"]:
        if (
            (group in rule["apiGroups"] or "*" in rule["apiGroups"])
            and (resource in rule["resources"] or "*" in rule["resources"])
            and (verb in rule["verbs"] or "*" in rule["verbs"])
        ):
            return True
    return False


def test_every_manifest_parses_with_kind_and_api_version():
    for f in sorted(K8S.glob("*.yaml")):
        for d in docs(f.name):
            meta = d.get("metadata", {})
            assert d.get("apiVersion") and d.get("kind") and (meta.get("name") or meta.get("generateName")), f
    template = json.loads((K8S / "base-job-template.json").read_text())
    assert {"job_configuration", "variables"} <= template.keys()


def test_cluster_role_grants_exactly_get_list_watch_on_the_seven_resources():
    rbac = docs("rbac.yaml")
    assert sorted(d["kind"] for d in rbac) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    (role,) = by_kind(rbac, "ClusterRole")
    g = grants(role)
    assert set(g) == EXPECTED, f"resources granted: {sorted(g)}"
    for key, verbs in g.items():
        assert verbs == READ_VERBS, f"{key}: {sorted(verbs)}"
    # nothing that writes, escalates or reads secrets
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]


def test_binding_ties_the_role_to_the_service_account_the_jobs_run_as():
    rbac = docs("rbac.yaml")
    (sa,) = by_kind(rbac, "ServiceAccount")
    (role,) = by_kind(rbac, "ClusterRole")
    (binding,) = by_kind(rbac, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    # flow-run Jobs use that service account, in its namespace, by default
    variables = json.loads((K8S / "base-job-template.json").read_text())["variables"]["properties"]
    assert variables["service_account_name"]["default"] == sa["metadata"]["name"]
    assert variables["namespace"]["default"] == sa["metadata"]["namespace"]


def test_base_job_template_placeholders_are_declared_variables():
    """What the Prefect server checks when the work pool is created (tests/flows/test_deployments.py
    creates it for real)."""
    template = json.loads((K8S / "base-job-template.json").read_text())
    used = set(re.findall(r"\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}", json.dumps(template["job_configuration"])))
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    job = template["job_configuration"]["job_manifest"]
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "{{ service_account_name }}"
    env = template["variables"]["properties"]["env"]["default"]
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"


def test_worker_is_namespaced_and_cannot_read_images_cluster_wide():
    worker = docs("worker.yaml")
    (dep,) = by_kind(worker, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    (role,) = by_kind(worker, "Role")
    (binding,) = by_kind(worker, "RoleBinding")
    assert spec["serviceAccountName"] == binding["subjects"][0]["name"]
    assert role["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert not by_kind(worker, "ClusterRole") and not by_kind(worker, "ClusterRoleBinding")
    cmd = spec["containers"][0]["command"]
    assert cmd[:3] == ["prefect", "worker", "start"] and "kubernetes" in cmd
    assert cmd[cmd.index("--pool") + 1] == "regkeeper"
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )


def test_read_in_use_lists_exactly_the_granted_resources():
    listed = {(r.group, r.plural) for r in kube.RESOURCES}
    assert listed == EXPECTED
    for r in kube.RESOURCES:
        # cluster-scope list calls on the matching API group
        assert r.method.startswith("list_") and r.method.endswith("_for_all_namespaces"), r
        want = "/api/v1/" if r.group == "" else f"/apis/{r.group}/v1/"
        assert r.path == want + r.plural
    # and no other Kubernetes API call hides elsewhere in the package
    src = "\n".join(f.read_text() for f in sorted(Path(kube.__file__).parent.rglob("*.py")))
    calls = set(
        re.findall(
            r"\b((?:list|read|watch|create|patch|delete|replace)_[a-z_]+_(?:for_all_namespaces|namespaced_[a-z_]+))\b",
            src,
        )
    )
    assert calls == {r.method for r in kube.RESOURCES}, calls


def test_every_request_of_a_real_read_is_authorised_by_the_cluster_role(tmp_path):
    from tests.support.kubeapi import FIXTURES, KubeApiServer, write_kubeconfig

    (role,) = by_kind(docs("rbac.yaml"), "ClusterRole")
    with KubeApiServer(FIXTURES, substitutions={"{{REGISTRY}}": "registry.local:5000"}) as api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": api})
        scan = kube.read_in_use(str(kubeconfig), ["prod"], request_timeout=10, page_size=2)
        requests = list(api.requests)
    assert not scan.errors and scan.refs
    seen = set()
    for req in requests:
        m = re.match(
            r"^/(?:api/v1|apis/(?P<group>[a-z.]+)/v\d+)(?:/namespaces/[^/]+)?/(?P<res>[a-z]+)(?P<name>/[^/]+)?$",
            urlsplit(req["path"]).path,
        )
        assert m, f"unexpected API call {req['method']} {req['path']}"
        group, res = m.group("group") or "", m.group("res")
        verb = (
            "watch" if req["query"].get("watch") in ("1", "true") else ("get" if m.group("name") else "list")
        )
        assert req["method"] == "GET"
        assert "/namespaces/" not in req["path"], "the read is cluster-wide"
        assert authorized(role, group, res, verb), f"RBAC would forbid {verb} {res}.{group}"
        seen.add((group, res, verb))
    # every granted resource was actually needed, with list; get/watch are granted for kubectl-style tooling
    assert {(g, r) for g, r, _ in seen} == EXPECTED
    assert {v for _, _, v in seen} == {"list"}


@pytest.mark.parametrize("name", ["rbac.yaml", "worker.yaml"])
def test_manifests_are_valid_for_the_kubernetes_client_models(name):
    """Deserialise through the official client's models and back: a misspelt or misplaced field
    is dropped on the way and the round trip differs; a missing required field raises."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    models = {
        "ServiceAccount": "V1ServiceAccount",
        "ClusterRole": "V1ClusterRole",
        "ClusterRoleBinding": "V1ClusterRoleBinding",
        "Role": "V1Role",
        "RoleBinding": "V1RoleBinding",
        "Deployment": "V1Deployment",
        "Namespace": "V1Namespace",
    }

    class Resp:
        def __init__(self, d):
            self.data = json.dumps(d)

    for d in docs(name):
        obj = api.deserialize(Resp(d), models[d["kind"]])
        assert api.sanitize_for_serialization(obj) == d, f"{name}: {d['kind']} {d['metadata']['name']}"


def test_pull_events_deployment_runs_the_receiver_and_its_service_reaches_it():
    from app.cli import _parser

    d = docs("pull-events.yaml")
    (dep,) = by_kind(d, "Deployment")
    (svc,) = by_kind(d, "Service")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    args = _parser().parse_args(c["command"][1:])
    assert (args.cmd, args.action, args.listen) == ("events", "serve", "0.0.0.0:5080")
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["replicas"] == 1  # the heartbeat that detects gaps is the receiver's own
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
    env = {e["name"] for e in c["env"]}
    assert {"PULL_EVENTS_TOKEN", "PULLS_STORE"} <= env  # secrets from a Secret, never inline
