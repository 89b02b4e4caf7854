"""reclaim.mode kubernetes-job: the garbage-collect Job goes through the official kubernetes
client to a loopback Job API whose "kubelet" runs the Job's command for real against a real
registry's storage."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from regkeeper.config import KubernetesConfig, ReclaimConfig
from regkeeper.prune.reclaim import reclaim
from regkeeper.errors import RegkeeperError
from regkeeper.storage import FilesystemStorage
from tests.support import images
from tests.support.kubeapi import FAKE_TOKEN, write_kubeconfig
from tests.support.rkconfig import RegistryControl


class JobApi:
    """POST .../namespaces/{ns}/jobs creates a Job and runs its container command locally;
    GET .../jobs/{name}/status reports succeeded/failed from the exit code."""

    def __init__(self):
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
                rc = subprocess.run(argv, capture_output=True, timeout=120).returncode
                job["status"] = {"succeeded": 1} if rc == 0 else {"failed": 1}
                api.jobs[name] = job
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
    p.write_text(yaml.safe_dump({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"generateName": "registry-garbage-collect-", "namespace": "registry"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "gc", "image": "registry:2.8.3", "command": argv}]}}}}))
    return str(p)


def cfg(ctl, tmpl):
    rc = ctl.reclaim_config()
    return ReclaimConfig.model_validate({"mode": "kubernetes-job", "jobTemplate": tmpl, "readOnly": rc["readOnly"],
                                         "readWrite": rc["readWrite"], "timeout": "2m"})


def test_gc_job_reclaims_in_a_read_only_window(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(tmp, ["/usr/bin/docker-registry", "garbage-collect", str(reg.config_path)])
    res = reclaim(cfg(ctl, tmpl), FilesystemStorage(reg.root), kube_cfg=KubernetesConfig(kubeconfig=str(kc), contexts=["prod"]))
    assert res.error is None and res.ran
    assert ctl.calls == ["readonly", "readwrite"]
    assert [m for m, p in api.requests if m == "POST"] == ["POST"]
    assert api.requests[0][1] == "/apis/batch/v1/namespaces/registry/jobs"
    assert 300_000 <= res.bytes_freed < 400_000       # the deleted image's layer is gone
    assert images.head_manifest(reg.url, "job/app", "keep") is not None
    for d in keep.layer_digests:                      # the kept image is intact
        assert images.blob_exists(reg.url, "job/app", d)


def test_delete_untagged_template_refused_before_read_only(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(tmp, ["registry", "garbage-collect", "--delete-untagged", "/etc/docker/registry/config.yml"])
    with pytest.raises(RegkeeperError) as ei:
        reclaim(cfg(ctl, tmpl), FilesystemStorage(reg.root), kube_cfg=KubernetesConfig(kubeconfig=str(kc)))
    assert "--delete-untagged" in str(ei.value)
    assert ctl.calls == [] and api.requests == []


def test_failed_job_reported_and_registry_back_to_read_write(setup):
    reg, keep, api, kc, ctl, tmp = setup
    tmpl = template(tmp, ["/bin/false"])
    res = reclaim(cfg(ctl, tmpl), FilesystemStorage(reg.root), kube_cfg=KubernetesConfig(kubeconfig=str(kc), contexts=["prod"]))
    assert not res.ran and "failed" in res.error and "registry/registry-garbage-collect-0" in res.error
    assert ctl.calls == ["readonly", "readwrite"]
    assert images.push_image(reg.url, "job/after", "x").digest   # writable again
    assert FAKE_TOKEN not in res.error + res.output
