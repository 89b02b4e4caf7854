"""deployments/kubernetes/base-job-template.json against prefect-kubernetes' KubernetesWorker
(pinned in the dev extra): its job_configuration keys are the worker's, every ``{{ variable }}``
it uses is declared in ``variables.properties`` (and every declared one is used), the variables
accept what the worker's own schema accepts, the worker's job configuration builds a Job from
it, and ``prefect work-pool create --type kubernetes --base-job-template`` accepts it against a
real server (and refuses a copy that uses an undeclared variable)."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deployments" / "kubernetes" / "base-job-template.json"


def ours() -> dict:
    return json.loads(TEMPLATE.read_text())


def default() -> dict:
    from prefect_kubernetes.worker import KubernetesWorker

    return KubernetesWorker.get_default_base_job_template()


def placeholders(obj) -> set[str]:
    from prefect.utilities.templating import find_placeholders

    return {p.name for p in find_placeholders(json.dumps(obj))}


def types(schema: dict) -> set[str]:
    """The JSON types a variable schema accepts (a $ref counts as object)."""
    if "anyOf" in schema:
        return set().union(*(types(s) for s in schema["anyOf"]))
    if "$ref" in schema or "allOf" in schema:
        return {"object"}
    t = schema.get("type")
    return set(t) if isinstance(t, list) else {t} if t else {"any"}


def test_job_configuration_keys_are_the_workers():
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    mine, theirs = ours()["job_configuration"], default()["job_configuration"]
    assert set(mine) <= set(theirs), set(mine) - set(theirs)
    required = {n for n, f in KubernetesWorkerJobConfiguration.model_fields.items() if f.is_required()}
    assert required <= set(mine), required - set(mine)
    assert set(theirs) - set(mine) == {"annotations"}  # the only one left out (no annotations)


def test_every_variable_used_is_declared_and_every_declared_one_used():
    t = ours()
    used = placeholders(t["job_configuration"])
    declared = set(t["variables"]["properties"])
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared but unused: {declared - used}"


def test_variables_accept_what_the_worker_accepts():
    import jsonschema

    mine, theirs = ours()["variables"], default()["variables"]
    jsonschema.Draft202012Validator.check_schema(mine)
    for name, schema in mine["properties"].items():
        if "default" in schema:
            jsonschema.validate(schema["default"], schema)
        if name in theirs["properties"]:
            got, allowed = types(schema), types(theirs["properties"][name])
            assert got <= allowed | {"any"}, f"{name}: {got} not among {allowed}"
    extra = set(mine["properties"]) - set(theirs["properties"])
    assert extra == {"registry_storage_claim"}  # ours alone: the registry storage PVC


def test_the_worker_builds_a_job_from_it():
    import anyio
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    cfg = anyio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values,
        ours(),
        {"image": "registry.example:5000/regkeeper:1.2.3", "env": {"REGKEEPER_TASK_RUNNER": "threads"}},
    )
    run = FlowRun(id=uuid.uuid4(), name="brisk-otter", flow_id=uuid.uuid4())
    cfg.prepare_for_flow_run(flow_run=run)
    job = cfg.job_manifest
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "regkeeper" == cfg.namespace
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400 and job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "regkeeper" and pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["image"] == "registry.example:5000/regkeeper:1.2.3" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["prefect", "flow-run", "execute"]  # the worker's default command
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == str(run.id)
    assert env["REGKEEPER_TASK_RUNNER"] == "threads"  # a job variable reaches the pod
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/regkeeper", "/var/lib/registry"}
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["registry-storage"]
    assert cfg.job_watch_timeout_seconds == 7200 and cfg.pod_watch_timeout_seconds == 300


def cli(args: list[str], tmp_path: Path):
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_work_pool_create_accepts_it_and_refuses_an_undeclared_variable(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    name = f"regkeeper-k8s-{uuid.uuid4().hex[:6]}"
    p = cli(
        ["work-pool", "create", name, "--type", "kubernetes", "--base-job-template", str(TEMPLATE)], tmp_path
    )
    assert p.returncode == 0, p.stdout + p.stderr
    with get_client(sync_client=True) as c:
        pool = c.read_work_pool(name)
        assert pool.type == "kubernetes" and pool.base_job_template == ours()
        c.delete_work_pool(name)

    broken = ours()
    broken["job_configuration"]["job_manifest"]["spec"]["activeDeadlineSeconds"] = "{{ deadline }}"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    p = cli(
        ["work-pool", "create", name + "-bad", "--type", "kubernetes", "--base-job-template", str(bad)],
        tmp_path,
    )
    assert p.returncode != 0
    assert "deadline" in p.stdout + p.stderr
