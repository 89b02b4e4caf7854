"""The fixed cost of a CLI run, against a running Prefect server, side by side with its floor.

    python bench/cli.py [--repeat 5] [--jobs gc,capacity]

Starts ``prefect server start`` on 127.0.0.1 (a free port, its own PREFECT_HOME, analytics off)
and an empty registry (distribution 2.8), both stopped by PID at the end. Then, alternating,
N times each, as fresh processes with PREFECT_API_URL set:

- ``import``  ``python -c "import prefect"``
- ``flow``    ``python -c`` defining a trivial ``@flow`` and calling it (import + one flow run
              against the server: the floor of any Prefect-run job)
- ``run <job>`` ``python -m app.cli run <job> --config ...`` for jobs that have nothing to do
              (gc --dry-run on an empty registry; capacity without storage, dry run)

Prints medians of wall AND CPU seconds (user + system of the child, from
``resource.getrusage(RUSAGE_CHILDREN)``) and the ratios of each job to the floor (goal <= 1.3x).
The fixed-cost line the CLI prints itself (import, server connect, flow run) is shown too.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.prefectserver import start_prefect_server  # noqa: E402
from tests.support.procs import ManagedProcess  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.rkconfig import registry_entry, write_config  # noqa: E402

BARE_FLOW = """
from prefect import flow

@flow
def bare():
    return 1

bare()
"""


def _env(home: Path, api: str | None) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    return env


def start_server(home: Path) -> tuple[ManagedProcess, str]:
    return start_prefect_server(home, _env(home, None))


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s of the child and its children, stderr)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exit {r.returncode}: {r.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, r.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", default="gc,capacity", help="comma-separated: gc, capacity")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-cli-"))
    home = tmp / "prefect-home"
    home.mkdir()
    reg = server = None
    try:
        reg = RegistryServer(tmp / "reg")
        cfg = write_config(
            tmp / "regkeeper.yaml",
            [registry_entry(reg), registry_entry(reg, "nostorage", storage=False)],
            gc={"days": 30, "keepLast": 5},
            capacity={"writeCheck": False},
        )
        t0 = time.perf_counter()
        server, api = start_server(home)
        print(f"prefect server up at {api} in {time.perf_counter() - t0:.1f}s (pid {server.pid})")
        env = _env(home, api)
        py = sys.executable
        cli = [py, "-m", "app.cli", "run"]
        cases = {
            "import": [py, "-c", "import prefect"],
            "flow": [py, "-c", BARE_FLOW],
        }
        for job in [j.strip() for j in a.jobs.split(",") if j.strip()]:
            if job == "gc":
                cases["run gc"] = cli + ["gc", "--dry-run", "--config", str(cfg)]
            elif job == "capacity":
                cases["run capacity"] = cli + [
                    "capacity",
                    "--dry-run",
                    "--registry",
                    "nostorage",
                    "--config",
                    str(cfg),
                ]
        timed(cases["flow"], env)  # warm-up: the server's first flow run, the page cache
        wall: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        lines: dict[str, str] = {}
        for _ in range(a.repeat):
            for name, cmd in cases.items():
                w, c, err = timed(cmd, env)
                wall[name].append(w)
                cpu[name].append(c)
                fixed = [ln for ln in err.splitlines() if "fixed cost" in ln]
                if fixed:
                    lines[name] = fixed[-1]
        med_w = {k: statistics.median(v) for k, v in wall.items()}
        med_c = {k: statistics.median(v) for k, v in cpu.items()}
        print(
            f"median of {a.repeat} runs each, alternating; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}; PREFECT_API_URL set (a running server)"
        )
        print(f"{'':16}{'wall s':>9}{'CPU s':>9}{'wall/flow':>11}{'CPU/flow':>10}")
        for k in cases:
            print(
                f"{k:16}{med_w[k]:>9.2f}{med_c[k]:>9.2f}"
                f"{med_w[k] / med_w['flow']:>10.2f}x{med_c[k] / med_c['flow']:>9.2f}x"
            )
        for k, ln in lines.items():
            print(f"{k}: {ln.split('regkeeper: ', 1)[-1]}")
        worst = max((med_w[k] / med_w["flow"] for k in cases if k.startswith("run")), default=0.0)
        worst_c = max((med_c[k] / med_c["flow"] for k in cases if k.startswith("run")), default=0.0)
        ok = worst <= 1.3 and worst_c <= 1.3
        print(
            f"goal <= 1.3x the floor (a bare flow run): {'met' if ok else 'NOT met'} "
            f"(worst wall {worst:.2f}x, CPU {worst_c:.2f}x)"
        )
    finally:
        if server is not None:
            server.stop(timeout=15)
        if reg is not None:
            reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
