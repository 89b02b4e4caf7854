"""The command line as a user runs it: exit codes and the last lines that say why."""

import json
import os
import subprocess
import sys

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config


def rk(*args, cwd=None, timeout=180):
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def test_inventory_formats_and_check(registry, tmp_path):
    img = images.push_image(registry.url, "cli/app", "v1")
    cfg = write_config(tmp_path / "regkeeper.yaml", [registry_entry(registry)])
    out = rk("inventory", "--config", str(cfg), "--include", "cli/**", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["repositories"]["cli/app"]["tags"] == {"v1": img.digest}
    csv = rk("inventory", "--config", str(cfg), "--include", "cli/**", "--format", "csv")
    assert csv.returncode == 0 and f"cli/app,v1,{img.digest}" in csv.stdout
    table = rk("inventory", "--config", str(cfg), "--include", "cli/**")
    assert table.returncode == 0 and "cli/app" in table.stdout and "1 repositories, 1 tags" in table.stderr
    chk = rk("check", "--config", str(cfg))
    assert chk.returncode == 0 and "local-registry: ok" in chk.stdout


def test_config_error_exit_2(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("mirrorRepositories:\n- name: a\n  type: local\n  urll: http://127.0.0.1:1\n")
    out = rk("inventory", "--config", str(p))
    assert out.returncode == 2
    assert "mirrorRepositories[0].urll: unknown key (did you mean 'url'?)" in out.stderr


def test_unreachable_registry_exit_1(tmp_path, dead_port):
    port = dead_port
    cfg = write_config(
        tmp_path / "r.yaml", [{"name": "gone", "url": f"http://127.0.0.1:{port}", "retries": 0}]
    )
    out = rk("inventory", "--config", str(cfg))
    assert out.returncode == 1
    assert "registry 'gone'" in out.stderr and "cannot connect" in out.stderr


def test_run_gc_dry_run_then_fail_closed_refusal(registry, tmp_path, dead_port):
    images.push_image(registry.url, "cli/gc", "v1")
    cfg = write_config(
        tmp_path / "regkeeper.yaml", [registry_entry(registry)], gc={"days": 30, "include": ["cli/**"]}
    )
    out = rk("run", "gc", "--config", str(cfg), "--dry-run")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "report:" in out.stdout and (tmp_path / "reports" / "index.html").exists()
    # Kubernetes unreachable + failClosed: refuse (exit 3) and say which context and why
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "prod",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{dead_port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    cfg2 = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry)],
        gc={"days": 30, "include": ["cli/**"]},
        kubernetes={"kubeconfig": str(kc), "failClosed": True, "timeout": "3s"},
    )
    out = rk("run", "gc", "--config", str(cfg2))
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    last = out.stderr.strip().splitlines()[-1]
    assert "refused" in last and "prod" in last
    assert "not-a-real-token" not in out.stderr + out.stdout
