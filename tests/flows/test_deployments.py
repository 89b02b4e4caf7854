"""Deployments: serve.py's deployments register against a real (temporary) Prefect server and
read back with their schedules, time zones, concurrency limits and parameter schemas; the server
rejects bad parameter values; prefect.yaml declares the same deployments and deploys for real to
a Kubernetes work pool created from base-job-template.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments.serve import DEPLOYMENT_NAME, SPECS, TAGS, build_deployments

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
TEMPLATE = ROOT / "deployments" / "kubernetes" / "base-job-template.json"

EXPECTED = {  # flow: (cron, active, concurrency limit) -- the issue's schedule table
    "backup": ("0 2 * * *", True, 1),
    "gc": ("0 3 * * *", True, 1),
    "expire": ("30 * * * *", True, 1),
    "replicate": ("*/15 * * * *", True, 1),
    "capacity": ("*/5 * * * *", True, None),
    "restore": (None, None, 1),
    "nightly": ("0 2 * * *", False, 1),
}


def prop(schema: dict, name: str) -> dict:
    """A parameter's JSON schema with Optional[...] (anyOf [..., null]) unwrapped."""
    p = schema["properties"][name]
    if "anyOf" in p:
        (inner,) = [x for x in p["anyOf"] if x.get("type") != "null"]
        return {**p, **inner}
    return p


def limit_of(dep):
    """The deployment's concurrency limit (Prefect 3 keeps it as a global concurrency limit)."""
    gcl = dep.global_concurrency_limit
    return gcl.limit if gcl is not None else None


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def test_specs_cover_every_flow_with_the_issue_schedules():
    assert {s.flow: (s.cron, s.active if s.cron else None, s.concurrency_limit) for s in SPECS} == EXPECTED
    deps = build_deployments("UTC")
    assert [d.flow_name for d in deps] == [s.flow for s in SPECS]
    for d in deps:
        assert d.name == DEPLOYMENT_NAME and d.tags == list(TAGS) and d.enforce_parameter_schema


def test_deployments_register_and_read_back(prefect_harness):
    tz = "Europe/Berlin"  # not the default: proves the time zone is carried through
    deps = build_deployments(tz)
    ids = {d.flow_name: d.apply() for d in deps}
    with client() as c:
        for flow, (cron, active, limit) in EXPECTED.items():
            dep = c.read_deployment_by_name(f"{flow}/{DEPLOYMENT_NAME}")
            assert dep.id == ids[flow]
            assert dep.tags == ["regkeeper"]
            assert dep.enforce_parameter_schema is True
            assert limit_of(dep) == limit, flow
            scheds = c.read_deployment_schedules(dep.id)
            if cron is None:
                assert scheds == [], flow
            else:
                (s,) = scheds
                assert (s.schedule.cron, s.schedule.timezone, s.active) == (cron, tz, active), flow
            schema = dep.parameter_openapi_schema
            assert prop(schema, "config_path")["type"] == "string"
            assert prop(schema, "dry_run")["type"] == "boolean"
            for name in schema["properties"]:  # every parameter has a description for the form
                assert schema["properties"][name].get("description"), f"{flow}.{name}"

        gc = c.read_deployment_by_name(f"gc/{DEPLOYMENT_NAME}").parameter_openapi_schema
        days = prop(gc, "days")
        assert days["type"] == "integer" and days["minimum"] == 0
        assert prop(gc, "keep_last")["minimum"] == 0
        assert prop(gc, "force")["type"] == "boolean" and gc["properties"]["force"]["default"] is False
        restore = c.read_deployment_by_name(f"restore/{DEPLOYMENT_NAME}").parameter_openapi_schema
        assert restore["properties"]["dry_run"]["default"] is True  # restore is a dry run unless told
        nightly = c.read_deployment_by_name(f"nightly/{DEPLOYMENT_NAME}").parameter_openapi_schema
        jobs = prop(nightly, "jobs")
        assert jobs["type"] == "array"
        assert jobs["items"]["enum"] == ["backup", "gc", "expire", "replicate", "capacity"]


@pytest.mark.parametrize(
    "flow,params",
    [
        ("gc", {"days": -1}),
        ("gc", {"days": "abc"}),
        ("gc", {"keep_last": 100001}),
        ("gc", {"dry_run": "maybe"}),
        ("nightly", {"jobs": ["backup", "reboot"]}),
        ("restore", {"snapshot": ""}),
    ],
)
def test_server_rejects_bad_parameter_values(prefect_harness, flow, params):
    from prefect.exceptions import PrefectHTTPStatusError

    for d in build_deployments():
        if d.flow_name == flow:
            dep_id = d.apply()
    with client() as c:
        with pytest.raises(PrefectHTTPStatusError) as err:
            c.create_flow_run_from_deployment(dep_id, parameters=params)
        assert err.value.response.status_code == 409
        assert (
            "Validation failed" in err.value.response.text or "validation" in err.value.response.text.lower()
        )
        # a good value goes through (then the run is removed: nothing executes it here)
        ok = c.create_flow_run_from_deployment(dep_id, parameters={"dry_run": True})
        assert ok.parameters == {"dry_run": True}
        c.delete_flow_run(ok.id)


def load_prefect_yaml() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def test_prefect_yaml_matches_serve():
    doc = load_prefect_yaml()
    entries = {e["entrypoint"]: e for e in doc["deployments"]}
    deps = build_deployments("UTC")
    assert len(entries) == len(doc["deployments"]) == len(deps)
    for spec, d in zip(SPECS, deps, strict=True):
        e = entries[spec.entrypoint]
        assert (ROOT / spec.entrypoint.split(":")[0]).is_file()
        assert d.entrypoint == f"{spec.module}.{spec.flow}"
        assert e["name"] == d.name
        assert e.get("concurrency_limit") == d.concurrency_limit, spec.flow
        assert e["tags"] == d.tags
        assert e["parameters"] == d.parameters
        assert e["enforce_parameter_schema"] is True
        assert e["work_pool"]["name"] == "regkeeper"
        want = [
            {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
            for s in d.schedules
        ]
        assert e["schedules"] == want, spec.flow


def test_work_pool_from_template_and_prefect_yaml_deploy(prefect_harness, tmp_path):
    """Create the Kubernetes work pool from base-job-template.json (the server validates the
    template) and run `prefect deploy --all` on prefect.yaml against it."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    template = json.loads(TEMPLATE.read_text())
    with client() as c:
        try:
            c.delete_work_pool("regkeeper")
        except Exception:  # noqa: BLE001 - not there yet
            pass
        pool = c.create_work_pool(
            WorkPoolCreate(name="regkeeper", type="kubernetes", base_job_template=template)
        )
        assert (
            pool.base_job_template["variables"]["properties"]["service_account_name"]["default"]
            == "regkeeper"
        )

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(PREFECT_YAML),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = load_prefect_yaml()
    with client() as c:
        for e in doc["deployments"]:
            flow = e["entrypoint"].rsplit(":", 1)[1]
            dep = c.read_deployment_by_name(f"{flow}/{e['name']}")
            assert dep.work_pool_name == "regkeeper"
            assert dep.entrypoint == e["entrypoint"]
            assert limit_of(dep) == e.get("concurrency_limit"), flow
            assert dep.pull_steps == doc["pull"]
            got = [
                {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
                for s in c.read_deployment_schedules(dep.id)
            ]
            assert got == e["schedules"], flow
            assert dep.parameter_openapi_schema["properties"]["dry_run"]["type"] == "boolean"
