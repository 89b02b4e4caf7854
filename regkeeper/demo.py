"""``regkeeper demo``: the nightly flow against a local registry full of sample images.

What it does, all on 127.0.0.1 and inside one work directory (default ``./regkeeper-demo``):

1. starts two CNCF distribution registries (``/usr/bin/docker-registry``) with configs written
   here: ``demo-registry`` (the primary, filesystem storage, deletes enabled) and
   ``demo-replica`` (the replication target);
2. pushes sample images with regkeeper's own OCI client (see :data:`SAMPLE`): business
   repositories with old and fresh tags, a base image that never expires, CI repositories past
   their 72h TTL, multi-arch indexes, cosign-style ``.sig`` signatures, and backdates every tag
   (the push time regkeeper reads is the tag link's mtime in the registry's storage);
3. writes a Kubernetes snapshot (``examples/demo/kube-snapshot.json`` with the registry host and
   digests filled in) that marks some images as in use, and a regkeeper config;
4. runs the ``nightly`` flow (backup -> gc -> expire -> replicate -> capacity) in Prefect's
   local (ephemeral) mode with analytics off, unless ``PREFECT_API_URL`` points at a server;
5. prints where the reports are and how to see the runs in the Prefect UI, and stops the
   registries by PID (``--keep-running`` leaves them up for more ``regkeeper run ...``).

Prefect-free until step 4 (which imports ``flows.nightly``).
"""

import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

REGISTRY_BIN = "/usr/bin/docker-registry"
MARKER = ".regkeeper-demo"
OWNED = ("registry", "replica", "backups", "reports", "cache", "regkeeper.yaml",
         "kube-snapshot.json")
PRIMARY, REPLICA = "demo-registry", "demo-replica"
# the sample Kubernetes snapshot and the config template live in the source tree (examples/demo/)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "demo"
SNAPSHOT_TEMPLATE = EXAMPLES / "kube-snapshot.json"
CONFIG_TEMPLATE = EXAMPLES / "regkeeper.yaml"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


# --------------------------------------------------------------------------- the sample


@dataclass(frozen=True)
class Item:
    """One tag to push. ``kind``: image | index (amd64+arm64) | alias (another tag's digest) |
    sig (cosign signature of ``of``). ``age``: hours since push."""
    repo: str
    tag: str
    age_hours: float
    kind: str = "image"
    of: str | None = None          # alias / sig: the tag it points at / signs


D = 24.0
SAMPLE: tuple[Item, ...] = (
    # business tier (team-*/**): gc keeps the newest 2 images and anything younger than 30 days
    Item("team-a/app-service", "1.0.0", 120 * D),
    Item("team-a/app-service", "sig-1.0.0", 120 * D, "sig", of="1.0.0"),
    Item("team-a/app-service", "1.1.0", 100 * D),
    Item("team-a/app-service", "1.2.0", 90 * D),          # in use: Deployment prod/app-service (tag)
    Item("team-a/app-service", "1.3.0", 60 * D),          # in use: CronJob batch/nightly-report (digest)
    Item("team-a/app-service", "1.4.0", 5 * D),
    Item("team-a/app-service", "1.5.0", 1 * D),
    Item("team-a/app-service", "latest", 1 * D, "alias", of="1.5.0"),
    Item("team-a/app-service", "sig-1.5.0", 1 * D, "sig", of="1.5.0"),
    Item("team-b/web", "v1", 150 * D, "index"),           # stale multi-arch: deleted with its children
    Item("team-b/web", "v2", 60 * D, "index"),
    Item("team-b/web", "stable", 60 * D, "alias", of="v2"),   # gc protects "stable": v2 stays
    Item("team-b/web", "v3", 2 * D, "index"),
    Item("team-b/web", "v4", 1.0),
    # base tier: kept forever (and gc leaves base/** alone)
    Item("base/alpine", "3.18", 400 * D, "index"),
    Item("base/alpine", "3.19", 200 * D, "index"),         # in use: DaemonSet kube-system/node-agent
    Item("base/alpine", "3.20", 20 * D),
    Item("base/alpine", "latest", 20 * D, "alias", of="3.20"),
    # temp tier (ci/**, tmp/**): expire 72h after push, emptied repositories removed
    Item("ci/build-123", "abc1234", 96),
    Item("ci/build-123", "abc1235", 96),
    Item("ci/build-124", "def5678", 120),
    Item("ci/build-125", "0a1b2c3", 10),                   # fresh: kept
    Item("ci/build-126", "pr-7", 96),                      # in use: Job ci/integration-pr-7
    Item("tmp/scratch", "test", 80),
)

# What the nightly run does to SAMPLE (checked by tests/flows/test_demo.py, printed by the demo).
EXPECTED = {
    "tags pushed": 24,
    "repositories": 8,
    "gc": {"tags deleted": 4, "in use (kept)": 2,
           "deleted": ["team-a/app-service:1.0.0", "team-a/app-service:1.1.0",
                       "team-a/app-service:sig-1.0.0", "team-b/web:v1"]},
    "expire": {"tags deleted": 4, "expired but in use": 2, "repositories removed": 3,
               "deleted": ["ci/build-123:abc1234", "ci/build-123:abc1235", "ci/build-124:def5678",
                           "tmp/scratch:test"]},
    "replicated repositories": ["base/alpine", "team-a/app-service", "team-b/web"],
}



# --------------------------------------------------------------------------- registries


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoRegistry:
    """``docker-registry serve`` with our own config on a free loopback port; stopped by PID."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = Path(root)
        self.storage = self.dir / "storage"
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.pid_path = self.dir / "registry.pid"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def write_config(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": hashlib.sha256(os.urandom(16)).hexdigest(),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self, timeout: float = 20.0) -> "DemoRegistry":
        self.write_config()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
        self._log = open(self.log_path, "ab", buffering=0)
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config_path)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_path.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = requests.get(f"{self.url}/v2/", timeout=2, verify=True)
                if r.status_code == 200:
                    return self
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.name}: docker-registry at {self.url} did not start ({last}); "
                           f"log {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 5.0) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.terminate()              # this PID only
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=timeout)
            self.proc = None
            self.pid_path.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def detach(self) -> None:
        """Leave the process running after this program exits (--keep-running); the pid file
        stays, and :meth:`stop` still works from this process."""
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def tag_link(self, repo: str, tag: str) -> Path:
        return (self.storage / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
                / "current/link")


# --------------------------------------------------------------------------- pushing


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canon(obj) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pusher:
    """Sample images through regkeeper's own client (upload_blob, put_manifest)."""

    def __init__(self, client, now: dt.datetime):
        self.c = client
        self.now = now
        self.base_layers: dict[str, bytes] = {}          # arch -> shared "distro" layer
        self.digests: dict[tuple[str, str], str] = {}    # (repo, tag) -> digest
        self.raw: dict[str, tuple[bytes, str]] = {}      # digest -> (bytes, media type)

    def blob(self, repo: str, data: bytes) -> dict:
        d = _digest(data)
        if self.c.head_blob(repo, d) is None:
            self.c.upload_blob(repo, d, data)
        return {"digest": d, "size": len(data)}

    def put(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        d = self.c.put_manifest(repo, ref, raw, media_type)
        self.raw[d] = (raw, media_type)
        return d

    def image(self, repo: str, seed: str, created: dt.datetime, arch: str = "amd64",
              oci: bool = False) -> tuple[bytes, str]:
        rng = random.Random(seed)
        if arch not in self.base_layers:
            self.base_layers[arch] = random.Random(f"base/{arch}").randbytes(96 * 1024)
        layers = [self.blob(repo, self.base_layers[arch]),
                  self.blob(repo, rng.randbytes(rng.randint(16, 48) * 1024))]
        lmt = OCI_LAYER if oci else DOCKER_LAYER
        config = self.blob(repo, _canon({
            "architecture": arch, "os": "linux", "created": _rfc3339(created),
            "config": {"Labels": {"org.opencontainers.image.source": f"regkeeper-demo/{repo}"}},
            "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, **config},
                    "layers": [{"mediaType": lmt, **x} for x in layers]}
        return _canon(manifest), manifest["mediaType"]

    def push(self, it: Item) -> str:
        created = self.now - dt.timedelta(hours=it.age_hours)
        repo = it.repo
        if it.kind == "image":
            raw, mt = self.image(repo, f"{repo}:{it.tag}", created)
        elif it.kind == "index":
            children = []
            for arch in ("amd64", "arm64"):
                craw, cmt = self.image(repo, f"{repo}:{it.tag}/{arch}", created, arch, oci=True)
                cd = self.put(repo, _digest(craw), craw, cmt)        # children by digest only
                children.append({"mediaType": cmt, "digest": cd, "size": len(craw),
                                 "platform": {"os": "linux", "architecture": arch}})
            raw, mt = _canon({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                              "annotations": {"org.opencontainers.image.created": _rfc3339(created)}}), OCI_INDEX
        elif it.kind == "alias":
            raw, mt = self.raw[self.digests[(repo, it.of)]]
        elif it.kind == "sig":
            subject = self.digests[(repo, it.of)]
            payload = self.blob(repo, _canon({"critical": {
                "identity": {"docker-reference": f"{self.c.host}/{repo}"},
                "image": {"docker-manifest-digest": subject},
                "type": "cosign container image signature"}, "optional": None}))
            config = self.blob(repo, _canon({"architecture": "", "os": "", "created": _rfc3339(created),
                                             "config": {}, "rootfs": {"type": "layers",
                                                                      "diff_ids": [payload["digest"]]}}))
            sig = hashlib.sha512(f"demo-signature {subject}".encode()).hexdigest()
            raw, mt = _canon({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": OCI_CONFIG, **config},
                              "layers": [{"mediaType": COSIGN_LAYER, **payload,
                                          "annotations": {"dev.cosignproject.cosign/signature": sig}}]}), OCI_MANIFEST
            tag = subject.replace(":", "-") + ".sig"
            d = self.put(repo, tag, raw, mt)
            self.digests[(repo, it.tag)] = d
            return tag
        else:
            raise ValueError(f"unknown sample kind {it.kind!r}")
        self.digests[(repo, it.tag)] = self.put(repo, it.tag, raw, mt)
        return it.tag


def push_sample(reg: DemoRegistry, now: dt.datetime | None = None) -> dict:
    """Push :data:`SAMPLE` and backdate every tag. Returns {(repo, sample tag): (registry tag, digest)}."""
    from .oci import RegistryClient

    now = now or dt.datetime.now(dt.timezone.utc)
    out = {}
    with RegistryClient(reg.name, reg.url, verify=True, retries=2) as client:
        p = Pusher(client, now)
        for it in SAMPLE:
            tag = p.push(it)
            out[(it.repo, it.tag)] = (tag, p.digests[(it.repo, it.tag)])
            t = (now - dt.timedelta(hours=it.age_hours)).timestamp()
            os.utime(reg.tag_link(it.repo, tag), (t, t))
    return out


def sample_tag(pushed: dict, repo: str, tag: str) -> str:
    """The registry tag of a sample entry (``sig-1.0.0`` -> ``sha256-<hex>.sig``)."""
    return pushed[(repo, tag)][0]


# --------------------------------------------------------------------------- config


_DIGEST_RE = re.compile(r"\{\{DIGEST:([^}:]+):([^}]+)\}\}")


def write_snapshot(template: Path, out: Path, host: str, pushed: dict) -> Path:
    """The Kubernetes snapshot with ``{{REGISTRY}}`` and ``{{DIGEST:repo:tag}}`` filled in."""
    text = template.read_text()

    def digest(m):
        key = (m.group(1), m.group(2))
        if key not in pushed:
            raise KeyError(f"{template}: {m.group(0)} names no sample image")
        return pushed[key][1]

    text = _DIGEST_RE.sub(digest, text).replace("{{REGISTRY}}", host)
    json.loads(text)                      # still valid JSON
    out.write_text(text)
    return out


def write_config(work: Path, primary: DemoRegistry, replica: DemoRegistry, snapshot: Path,
                 template: Path = CONFIG_TEMPLATE) -> Path:
    """``examples/demo/regkeeper.yaml`` with the registries and paths filled in, validated."""
    from .config import load_config

    values = {"PRIMARY_URL": primary.url, "PRIMARY_STORAGE": str(primary.storage),
              "PRIMARY_REGISTRY_CONFIG": str(primary.config_path), "REPLICA_URL": replica.url,
              "REPLICA_STORAGE": str(replica.storage), "KUBE_SNAPSHOT": str(snapshot),
              "WORKDIR": str(work)}
    text = template.read_text()
    for k, v in values.items():
        # JSON strings are YAML strings; WORKDIR sits inside quoted strings in the template
        text = text.replace("{{" + k + "}}", json.dumps(v)[1:-1] if k == "WORKDIR" else json.dumps(v))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise ValueError(f"{template}: unknown placeholders {left}")
    path = work / "regkeeper.yaml"
    path.write_text(text)
    load_config(path)                     # the demo config must be valid, like any other
    return path


# --------------------------------------------------------------------------- the command


@dataclass
class DemoResult:
    workdir: Path
    config: Path
    reports: Path
    primary: DemoRegistry
    replica: DemoRegistry
    pushed: dict = field(default_factory=dict)
    nightly: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def prepare_workdir(workdir: str | os.PathLike | None) -> Path:
    work = Path(workdir or "regkeeper-demo").resolve()
    if work.exists() and any(work.iterdir()) and not (work / MARKER).exists():
        raise SystemExit(f"regkeeper demo: {work} exists and is not a demo directory "
                         f"(no {MARKER}); pass --workdir with a new or empty directory")
    work.mkdir(parents=True, exist_ok=True)
    for name in OWNED:                   # a fresh start: only what an earlier demo created
        p = work / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    (work / MARKER).write_text("created by `regkeeper demo`; safe to delete\n")
    return work


def demo(workdir: str | os.PathLike | None = None, keep_running: bool = False,
         log=print) -> DemoResult:
    """Set up, run the nightly flow, and return what happened (the registries are stopped
    unless ``keep_running``)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's temporary server gets 20 s to start by default; a busy laptop needs more
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not os.access(REGISTRY_BIN, os.X_OK):
        raise SystemExit(f"regkeeper demo: {REGISTRY_BIN} is missing; install the Debian package "
                         "docker-registry (sudo apt-get install docker-registry) or run `make demo`")
    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)      # one line per Prefect API call otherwise
    work = prepare_workdir(workdir)
    primary = DemoRegistry(work / "registry", PRIMARY)
    replica = DemoRegistry(work / "replica", REPLICA)
    res = DemoResult(work, work / "regkeeper.yaml", work / "reports", primary, replica)
    try:
        primary.start()
        replica.start()
        log(f"registries: {PRIMARY} {primary.url} (pid {primary.pid}), "
            f"{REPLICA} {replica.url} (pid {replica.pid})")
        t0 = time.perf_counter()
        res.pushed = push_sample(primary)
        log(f"pushed {len(SAMPLE)} sample tags in {len({i.repo for i in SAMPLE})} repositories "
            f"({time.perf_counter() - t0:.1f}s)")
        snap = write_snapshot(SNAPSHOT_TEMPLATE, work / "kube-snapshot.json", primary.host, res.pushed)
        res.config = write_config(work, primary, replica, snap)
        log(f"config: {res.config}")
        log("running the nightly flow (backup -> gc -> expire -> replicate -> capacity) ...")
        from flows.nightly import nightly
        try:
            res.nightly = nightly(config_path=str(res.config))
        except Exception as e:  # noqa: BLE001 - reported below, with the reports that exist
            res.error = f"{type(e).__name__}: {e}"
            res.nightly = _latest_nightly(res.reports)
    finally:
        if keep_running:
            primary.detach()
            replica.detach()
        else:
            primary.stop()
            replica.stop()
    return res


def _latest_nightly(reports: Path) -> dict | None:
    files = sorted((reports / "nightly").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    try:
        return json.loads(files[-1].read_text())
    except (OSError, ValueError):
        return None


def _print_summary(res: DemoResult, keep_running: bool) -> None:
    p = print
    p("")
    p("regkeeper demo " + ("finished" if res.ok else "finished with failures"))
    jobs = (res.nightly or {}).get("jobs") or []
    if not jobs and res.nightly:
        p(f"  nightly: {res.nightly.get('status')}")
    for j in jobs:
        extra = j.get("key figures") or j.get("error") or ""
        p(f"  {j['job']:<10} {j['status']:<8} {extra}")
    if res.error:
        p(f"  why: {res.error}")
    p("")
    p(f"Reports:    {res.reports / 'index.html'}")
    p(f"            (open file://{res.reports / 'index.html'} in a browser; CSV/JSON next to each HTML)")
    p(f"Config:     {res.config}")
    p("See the runs in the Prefect UI (they are in Prefect's local database):")
    p("            prefect server start      # then open http://127.0.0.1:4200/runs")
    if keep_running:
        p(f"Registries still running: {res.primary.url} (pid file {res.primary.pid_path}), "
          f"{res.replica.url} (pid file {res.replica.pid_path})")
        p(f"            run a job again:  regkeeper run gc --config {res.config} --dry-run")
        p(f"            stop them:        kill $(cat {res.primary.pid_path}) $(cat {res.replica.pid_path})")
    else:
        p("Registries stopped (use --keep-running to keep them for more `regkeeper run ...`).")


def run_demo(workdir: str | os.PathLike | None = None, keep_running: bool = False) -> int:
    """The ``regkeeper demo`` command. Exit status 0 when the nightly run succeeded."""
    res = demo(workdir, keep_running)
    _print_summary(res, keep_running)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else None))
