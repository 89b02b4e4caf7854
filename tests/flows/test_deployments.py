"""Deployments: serve.py's deployments, named by job and purpose, register against a real
(temporary) Prefect server and read back with their names, descriptions, tags, schedules, time
zones, concurrency limits and parameter schemas; the server rejects bad parameter values and a
preview deployment's dry_run false; prefect.yaml declares the same deployments and deploys for
real to a Kubernetes work pool created from base-job-template.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments.serve import SPECS, TAGS, build_deployments

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
TEMPLATE = ROOT / "deployments" / "kubernetes" / "base-job-template.json"

EXPECTED = {  # deployment: (flow, cron, active, concurrency limit) -- the issue's schedule table
    "backup-nightly": ("backup", "0 2 * * *", True, 1),
    "gc-nightly": ("gc", "0 3 * * *", True, 1),
    "gc-preview": ("gc", None, None, None),
    "expire-hourly": ("expire", "30 * * * *", True, 1),
    "expire-preview": ("expire", None, None, None),
    "replicate-every-15-min": ("replicate", "*/15 * * * *", True, 1),
    "replicate-preview": ("replicate", None, None, None),
    "restore-manual": ("restore", None, None, 1),
    "backtest-manual": ("backtest", None, None, None),
    "undo-manual": ("undo", None, None, 1),
    "capacity-every-5-min": ("capacity", "*/5 * * * *", True, None),
    "nightly-all-jobs": ("nightly", "0 2 * * *", False, 1),
}
PREVIEWS = {
    "gc-preview": "gc-nightly",
    "expire-preview": "expire-hourly",
    "replicate-preview": "replicate-every-15-min",
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
    got = {s.name: (s.flow, s.cron, s.active if s.cron else None, s.concurrency_limit) for s in SPECS}
    assert got == EXPECTED
    deps = build_deployments("UTC")
    assert [(d.flow_name, d.name) for d in deps] == [(s.flow, s.name) for s in SPECS]
    for s, d in zip(SPECS, deps, strict=True):
        assert d.name.startswith(s.flow + "-")  # the name alone says which job (the UI shows it large)
        assert d.tags == s.tags and d.tags[0] == TAGS[0] and d.enforce_parameter_schema
        assert d.description == s.description and len(s.description) > 40
        assert ("preview" in d.tags) == s.preview == ("Dry run" in s.description)


def test_deployments_register_and_read_back(prefect_harness):
    tz = "Europe/Berlin"  # not the default: proves the time zone is carried through
    deps = build_deployments(tz)
    ids = {d.name: d.apply() for d in deps}
    with client() as c:
        for name, (flow, cron, active, limit) in EXPECTED.items():
            dep = c.read_deployment_by_name(f"{flow}/{name}")
            spec = next(s for s in SPECS if s.name == name)
            assert dep.id == ids[name]
            assert dep.tags == spec.tags and dep.description == spec.description
            assert dep.enforce_parameter_schema is True
            assert limit_of(dep) == limit, name
            scheds = c.read_deployment_schedules(dep.id)
            if cron is None:
                assert scheds == [], name
            else:
                (s,) = scheds
                assert (s.schedule.cron, s.schedule.timezone, s.active) == (cron, tz, active), name
            schema = dep.parameter_openapi_schema
            assert prop(schema, "config_path")["type"] == "string"
            assert prop(schema, "dry_run")["type"] == "boolean"
            for pname in schema["properties"]:  # every parameter has a description for the form
                assert schema["properties"][pname].get("description"), f"{name}.{pname}"

        gc = c.read_deployment_by_name("gc/gc-nightly").parameter_openapi_schema
        days = prop(gc, "days")
        assert days["type"] == "integer" and days["minimum"] == 0
        assert prop(gc, "keep_last")["minimum"] == 0
        assert prop(gc, "force")["type"] == "boolean" and gc["properties"]["force"]["default"] is False
        restore = c.read_deployment_by_name("restore/restore-manual").parameter_openapi_schema
        assert restore["properties"]["dry_run"]["default"] is True  # restore is a dry run unless told
        undo = c.read_deployment_by_name("undo/undo-manual").parameter_openapi_schema
        assert undo["properties"]["dry_run"]["default"] is True and "run_id" in undo["required"]
        nightly = c.read_deployment_by_name("nightly/nightly-all-jobs").parameter_openapi_schema
        jobs = prop(nightly, "jobs")
        assert jobs["type"] == "array"
        assert jobs["items"]["enum"] == ["backup", "gc", "expire", "replicate", "capacity"]
        for preview, job in PREVIEWS.items():
            flow = EXPECTED[preview][0]
            pv = c.read_deployment_by_name(f"{flow}/{preview}").parameter_openapi_schema
            real = c.read_deployment_by_name(f"{flow}/{job}").parameter_openapi_schema
            # dry_run is fixed to true; there is no force; every other parameter is the job's own
            dry_run = pv["properties"]["dry_run"]
            assert (dry_run["default"], dry_run["const"], dry_run["readOnly"]) == (True, True, True)
            assert "force" not in pv["properties"]
            assert unplaced(pv["properties"]) == unplaced(real["properties"]), preview


def unplaced(props: dict) -> dict:
    """Parameter schemas other than dry_run and force, without their place in the form."""
    return {
        k: {a: b for a, b in v.items() if a != "position"}
        for k, v in props.items()
        if k not in ("dry_run", "force")
    }


def test_preview_deployment_refuses_a_real_run(prefect_harness):
    """The "show me what you would delete" button cannot delete: the server refuses dry_run false
    (409) before any run exists, and force is not a parameter at all (the flow function has no
    such argument: a run given one anyway fails before doing anything)."""
    from prefect.exceptions import PrefectHTTPStatusError

    ids = {d.name: d.apply() for d in build_deployments() if d.name in PREVIEWS}
    with client() as c:
        for name, dep_id in ids.items():
            with pytest.raises(PrefectHTTPStatusError) as err:
                c.create_flow_run_from_deployment(dep_id, parameters={"dry_run": False})
            assert err.value.response.status_code == 409, name
            assert "force" not in c.read_deployment(dep_id).parameter_openapi_schema["properties"]
            ok = c.create_flow_run_from_deployment(dep_id, parameters={"dry_run": True})
            assert ok.parameters == {"dry_run": True}
            c.delete_flow_run(ok.id)


@pytest.mark.parametrize(
    "name,params",
    [
        ("gc-nightly", {"days": -1}),
        ("gc-nightly", {"days": "abc"}),
        ("gc-nightly", {"keep_last": 100001}),
        ("gc-nightly", {"dry_run": "maybe"}),
        ("gc-preview", {"days": -1}),
        ("nightly-all-jobs", {"jobs": ["backup", "reboot"]}),
        ("restore-manual", {"snapshot": ""}),
    ],
)
def test_server_rejects_bad_parameter_values(prefect_harness, name, params):
    from prefect.exceptions import PrefectHTTPStatusError

    for d in build_deployments():
        if d.name == name:
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
    entries = {e["name"]: e for e in doc["deployments"]}
    deps = build_deployments("UTC")
    assert len(entries) == len(doc["deployments"]) == len(deps)
    for spec, d in zip(SPECS, deps, strict=True):
        e = entries[spec.name]
        assert e["entrypoint"] == spec.entrypoint
        assert (ROOT / spec.entrypoint.split(":")[0]).is_file()
        assert d.entrypoint == f"{spec.module}.{spec.function}"
        assert e["description"] == d.description
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
            flow = EXPECTED[e["name"]][0]
            dep = c.read_deployment_by_name(f"{flow}/{e['name']}")
            assert dep.description == e["description"] and dep.tags == e["tags"]
            assert dep.work_pool_name == "regkeeper"
            assert dep.entrypoint == e["entrypoint"]
            assert limit_of(dep) == e.get("concurrency_limit"), flow
            assert dep.pull_steps == doc["pull"]
            got = [
                {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
                for s in c.read_deployment_schedules(dep.id)
            ]
            assert got == e["schedules"], flow
            dry_run = dep.parameter_openapi_schema["properties"]["dry_run"]
            assert dry_run["type"] == "boolean"
            if e["name"] in PREVIEWS:  # the preview's dry_run is fixed through prefect deploy too
                assert dry_run["const"] is True
