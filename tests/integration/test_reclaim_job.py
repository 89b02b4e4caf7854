"""reclaim.mode kubernetes-job: the garbage-collect Job goes through the official kubernetes
client to a loopback Job API whose "kubelet" runs the Job's command for real against a real
registry's storage. With run state, the Job's name goes into the read-only window record, and a
window left by a dead run stays read-only while its Job still runs, then is recovered."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from regkeeper.config import KubernetesConfig, ReclaimConfig
from regkeeper.errors import RegkeeperError
from regkeeper.prune.reclaim import reclaim
from regkeeper.storage import FilesystemStorage
from tests.support import images
from tests.support.kubeapi import FAKE_TOKEN, write_kubeconfig
from tests.support.rkconfig import RegistryControl


class JobApi:
    """POST .../namespaces/{ns}/jobs creates a Job and runs its container command locally;
    GET .../jobs/{name}/status reports succeeded/failed from the exit code."""

    def __init__(self, background: bool = False):
        self.background = background  # run the Job's command in a thread: it stays active
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        api = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                api.requests.append(("POST", self.path))
                if self.headers.get("Authorization") != f"Bearer {FAKE_TOKEN}":
                    return self._send(401, {"kind": "Status", "code": 401})
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ns = self.path.split("/namespaces/")[1].split("/")[0]
                name = job["metadata"].get("name") or job["metadata"]["generateName"] + str(len(api.jobs))
                job["metadata"].update(name=name, namespace=ns, uid=f"uid-{name}")
                argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
                job["status"] = {"active": 1}
                api.jobs[name] = job
                if api.background:
                    threading.Thread(target=api.run, args=(job, argv), daemon=True).start()
                else:
                    api.run(job, argv)
                self._send(201, {**job, "status": {}})

            def do_GET(self):  # noqa: N802
                api.requests.append(("GET", self.path))
                name = self.path.rstrip("/").split("/jobs/")[1].split("/")[0]
                if name not in api.jobs:
                    return self._send(404, {"kind": "Status", "code": 404})
                self._send(200, api.jobs[name])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def run(job: dict, argv: list[str]) -> None:
        rc = subprocess.run(argv, capture_output=True, timeout=120).returncode
        job["status"] = {"succeeded": 1} if rc == 0 else {"failed": 1}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setup(registry_factory, tmp_path):
    reg = registry_factory()
    keep = images.push_image(reg.url, "job/app", "keep", layers=[b"k" * 200_000])
    gone = images.push_image(reg.url, "job/app", "gone", layers=[b"g" * 300_000])
    images.delete_manifest(reg.url, "job/app", gone.digest)
    api = JobApi()
    kc = write_kubeconfig(tmp_path / "kubeconfig", {"prod": api.url})
    ctl = RegistryControl(reg)
    yield reg, keep, api, kc, ctl, tmp_path
    ctl.stop()
    api.stop()


def template(tmp_path, argv) -> str:
    p = tmp_path / "gc-job.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"generateName": "registry-garbage-collect-", "namespace": "registry"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "gc", "image": "registry:2.8.3", "command": argv}],
                        }
                    },
                },
            }
        )
    )
    return str(p)


def cfg(ctl, tmpl):
    rc = ctl.reclaim_config()
    return ReclaimConfig.model_validate(
        {
            "mode": "kubernetes-job",
            "jobTemplate": tmpl,
            "readOnly": rc["readOnly"],
            "readWrite": rc["readWrite"],
            "timeout": "2m",
        }
    )


def test_gc_job_reclaims_in_a_read_only_window(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(tmp, ["/usr/bin/docker-registry", "garbage-collect", str(reg.config_path)])
    res = reclaim(
        cfg(ctl, tmpl),
        FilesystemStorage(reg.root),
        kube_cfg=KubernetesConfig(kubeconfig=str(kc), contexts=["prod"]),
    )
    assert res.error is None and res.ran
    assert ctl.calls == ["readonly", "readwrite"]
    assert [m for m, p in api.requests if m == "POST"] == ["POST"]
    assert api.requests[0][1] == "/apis/batch/v1/namespaces/registry/jobs"
    assert 300_000 <= res.bytes_freed < 400_000  # the deleted image's layer is gone
    assert images.head_manifest(reg.url, "job/app", "keep") is not None
    for d in keep.layer_digests:  # the kept image is intact
        assert images.blob_exists(reg.url, "job/app", d)


def test_delete_untagged_template_refused_before_read_only(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(
        tmp, ["registry", "garbage-collect", "--delete-untagged", "/etc/docker/registry/config.yml"]
    )
    with pytest.raises(RegkeeperError) as ei:
        reclaim(cfg(ctl, tmpl), FilesystemStorage(reg.root), kube_cfg=KubernetesConfig(kubeconfig=str(kc)))
    assert "--delete-untagged" in str(ei.value)
    assert ctl.calls == [] and api.requests == []


def test_failed_job_reported_and_registry_back_to_read_write(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(tmp, ["/bin/false"])
    res = reclaim(
        cfg(ctl, tmpl),
        FilesystemStorage(reg.root),
        kube_cfg=KubernetesConfig(kubeconfig=str(kc), contexts=["prod"]),
    )
    assert not res.ran and "failed" in res.error and "registry/registry-garbage-collect-0" in res.error
    assert ctl.calls == ["readonly", "readwrite"]
    assert images.push_image(reg.url, "job/after", "x").digest  # writable again
    assert FAKE_TOKEN not in res.error + res.output


def test_job_named_in_the_window_and_a_dead_runs_window_waits_for_its_job(setup):
    """The window record names the Job as soon as it exists; when the run that created it is
    gone, recovery leaves the registry read-only while the Job runs, and closes the window once
    the Job finished."""
    import sys
    from dataclasses import replace

    from regkeeper.config import parse_config
    from regkeeper.runstate import Owner, RunState, read_window, recover_windows, save_window

    reg, keep, _, kc, ctl, tmp = setup
    api = JobApi(background=True)
    kc = write_kubeconfig(tmp / "kubeconfig-bg", {"prod": api.url})
    go = tmp / "go"
    wait_go = [
        sys.executable,
        "-c",
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)",
    ]
    rs = RunState(tmp / "state", Owner.current("gc", "run-with-job"), 60)
    seen = {}

    def watch():
        from tests.support.procs import wait_until

        try:
            seen["job"] = wait_until(
                lambda: (
                    (read_window(rs.root, "local-registry") or None)
                    and read_window(rs.root, "local-registry").gc_job
                ),
                timeout=120,
                what="gc_job recorded",
            )
        finally:
            go.touch()  # even when the wait failed: the job's process must end, not hang the test

    import threading

    t = threading.Thread(target=watch)
    t.start()
    res = reclaim(
        cfg(ctl, template(tmp, wait_go)),
        FilesystemStorage(reg.root),
        registry="local-registry",
        state=rs,
        kube_cfg=KubernetesConfig(kubeconfig=str(kc), contexts=["prod"]),
    )
    t.join()
    api.stop()
    assert res.error is None and res.ran and seen["job"]["namespace"] == "registry"
    assert seen["job"]["name"].startswith("registry-garbage-collect-")
    assert read_window(rs.root, "local-registry") is None  # closed after readWrite

    # a run killed while its Job runs: the window stays until the Job is done
    api = JobApi(background=True)
    kc = write_kubeconfig(tmp / "kubeconfig-2", {"prod": api.url})
    api.jobs["gc-running"] = {
        "metadata": {"name": "gc-running", "namespace": "registry"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"containers": [{"name": "gc", "image": "registry:2.8.3"}]}},
        },
        "status": {"active": 1},
    }
    rc = ctl.reclaim_config()
    conf = parse_config(
        yaml.safe_dump(
            {
                "mirrorRepositories": [
                    {
                        "name": "local-registry",
                        "url": reg.url,
                        "reclaim": {
                            "mode": "kubernetes-job",
                            "jobTemplate": template(tmp, ["true"]),
                            "readOnly": rc["readOnly"],
                            "readWrite": rc["readWrite"],
                        },
                    }
                ],
                "kubernetes": {"kubeconfig": str(kc), "contexts": ["prod"]},
            }
        )
    )
    ctl.reg.set_readonly(True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from regkeeper.runstate import Lease, Window, lease_name

    owner = replace(Owner.current("gc", "run-killed"), pid=dead.pid)
    lease = Lease(rs.root, lease_name("local-registry"), owner, 60)
    assert lease.acquire().ok
    save_window(
        rs.root,
        Window(
            registry="local-registry",
            owner=owner,
            started=owner.started,
            read_write=rc["readWrite"],
            timeout=60,
            lease=lease.name,
            lease_token=lease.token,
            mode="kubernetes-job",
            step="garbageCollect",
            gc_job={"namespace": "registry", "name": "gc-running"},
        ),
    )
    try:
        nxt = RunState(rs.root, Owner.current("capacity", "run-next"), 60)
        n = len(ctl.calls)
        (r,) = recover_windows(nxt, config=conf)
        assert r.outcome == "waiting" and "Job registry/gc-running is still running" in r.note()
        assert len(ctl.calls) == n and read_window(rs.root, "local-registry") is not None
        with pytest.raises(images.PushError, match="405"):
            images.push_image(reg.url, "job/while-gc", "x")  # still read-only
        api.jobs["gc-running"]["status"] = {"succeeded": 1}
        (r,) = recover_windows(nxt, config=conf)
        assert r.outcome == "recovered" and "run run-killed" in r.note()
        assert ctl.calls[n:] == ["readwrite"] and read_window(rs.root, "local-registry") is None
        assert images.push_image(reg.url, "job/after-recovery", "x").digest  # writable again
    finally:
        api.stop()
