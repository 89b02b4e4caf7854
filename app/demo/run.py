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

Prefect-free until step 4 (which imports ``flows.nightly``). The sample lives in
``app/demo/sample.py``, the registries in ``app/demo/registry.py``.
"""

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.demo.registry import REGISTRY_BIN, DemoRegistry
from app.demo.sample import EXPECTED, SAMPLE, push_sample, sample_tag  # noqa: F401 - the demo's API

MARKER = ".regkeeper-demo"
OWNED = ("registry", "replica", "backups", "reports", "cache", "regkeeper.yaml", "kube-snapshot.json")
PRIMARY, REPLICA = "demo-registry", "demo-replica"
# the sample Kubernetes snapshot and the config template live in the source tree (examples/demo/)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "demo"
SNAPSHOT_TEMPLATE = EXAMPLES / "kube-snapshot.json"
CONFIG_TEMPLATE = EXAMPLES / "regkeeper.yaml"

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
    json.loads(text)  # still valid JSON
    out.write_text(text)
    return out


def write_config(
    work: Path, primary: DemoRegistry, replica: DemoRegistry, snapshot: Path, template: Path = CONFIG_TEMPLATE
) -> Path:
    """``examples/demo/regkeeper.yaml`` with the registries and paths filled in, validated."""
    from regkeeper.config import load_config

    values = {
        "PRIMARY_URL": primary.url,
        "PRIMARY_STORAGE": str(primary.storage),
        "PRIMARY_REGISTRY_CONFIG": str(primary.config_path),
        "REPLICA_URL": replica.url,
        "REPLICA_STORAGE": str(replica.storage),
        "KUBE_SNAPSHOT": str(snapshot),
        "WORKDIR": str(work),
    }
    text = template.read_text()
    for k, v in values.items():
        # JSON strings are YAML strings; WORKDIR sits inside quoted strings in the template
        text = text.replace("{{" + k + "}}", json.dumps(v)[1:-1] if k == "WORKDIR" else json.dumps(v))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise ValueError(f"{template}: unknown placeholders {left}")
    path = work / "regkeeper.yaml"
    path.write_text(text)
    load_config(path)  # the demo config must be valid, like any other
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
        raise SystemExit(
            f"regkeeper demo: {work} exists and is not a demo directory "
            f"(no {MARKER}); pass --workdir with a new or empty directory"
        )
    work.mkdir(parents=True, exist_ok=True)
    for name in OWNED:  # a fresh start: only what an earlier demo created
        p = work / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    (work / MARKER).write_text("created by `regkeeper demo`; safe to delete\n")
    return work


def demo(workdir: str | os.PathLike | None = None, keep_running: bool = False, log=print) -> DemoResult:
    """Set up, run the nightly flow, and return what happened (the registries are stopped
    unless ``keep_running``)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's temporary server gets 20 s to start by default; a busy laptop needs more
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not os.access(REGISTRY_BIN, os.X_OK):
        raise SystemExit(
            f"regkeeper demo: {REGISTRY_BIN} is missing; install the Debian package "
            "docker-registry (sudo apt-get install docker-registry) or run `make demo`"
        )
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    work = prepare_workdir(workdir)
    primary = DemoRegistry(work / "registry", PRIMARY)
    replica = DemoRegistry(work / "replica", REPLICA)
    res = DemoResult(work, work / "regkeeper.yaml", work / "reports", primary, replica)
    try:
        primary.start()
        replica.start()
        log(
            f"registries: {PRIMARY} {primary.url} (pid {primary.pid}), "
            f"{REPLICA} {replica.url} (pid {replica.pid})"
        )
        t0 = time.perf_counter()
        res.pushed = push_sample(primary)
        log(
            f"pushed {len(SAMPLE)} sample tags in {len({i.repo for i in SAMPLE})} repositories "
            f"({time.perf_counter() - t0:.1f}s)"
        )
        snap = write_snapshot(SNAPSHOT_TEMPLATE, work / "kube-snapshot.json", primary.host, res.pushed)
        res.config = write_config(work, primary, replica, snap)
        log(f"config: {res.config}")
        log("running the nightly flow (backup -> gc -> expire -> replicate -> capacity) ...")
        from flows.nightly import nightly
        from tasks.common import reports_of

        try:
            res.nightly = nightly(config_path=str(res.config))
        except Exception as e:  # noqa: BLE001 - reported below, with the reports that exist
            res.error = f"{type(e).__name__}: {e}"
            res.nightly = next(iter(reports_of(e)), None)
    finally:
        if keep_running:
            primary.detach()
            replica.detach()
        else:
            primary.stop()
            replica.stop()
    return res


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
        p(
            f"Registries still running: {res.primary.url} (pid file {res.primary.pid_path}), "
            f"{res.replica.url} (pid file {res.replica.pid_path})"
        )
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
