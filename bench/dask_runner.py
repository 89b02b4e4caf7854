"""gc (dry run) with its scan tasks on Dask vs the default thread pool, same registry, same run.

    python bench/dask_runner.py [--repos 150] [--tags 3] [--workers 2] [--rounds 2]

A temporary Prefect server (prefect_test_harness), one distribution registry on 127.0.0.1 and a
dask.distributed LocalCluster of --workers processes. Each round runs gc dry-run with
runner: threads, then with runner: {type: dask, address: <the cluster>}. Prints wall-time
medians and their ratio, the registry requests of each run (its access log: both must match)
and CPU seconds (flow process + Dask workers). The machine is shared: wall time is noisy.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.rkconfig import registry_entry, write_config  # noqa: E402


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=150)
    ap.add_argument("--tags", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    from distributed import Client, LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from flows.gc import gc

    tmp = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    reg = RegistryServer(tmp / "registry")
    try:
        images.push_many(
            reg.url, n_repos=a.repos, tags_per_repo=a.tags, prefix="bench/app", verify=False, seed=1
        )
        gcsec = {"registry": "local-registry", "days": 0, "keepLast": 1, "protect": []}
        with (
            prefect_test_harness(server_startup_timeout=180),
            LocalCluster(
                n_workers=a.workers,
                processes=True,
                threads_per_worker=4,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            cfgs = {}
            for name, runner in (
                ("threads", None),
                ("dask", {"type": "dask", "address": cluster.scheduler_address}),
            ):
                d = tmp / name
                d.mkdir()
                cfgs[name] = write_config(
                    d / "regkeeper.yaml", [registry_entry(reg, storage=False)], gc=gcsec, runner=runner
                )
            gc(config_path=str(cfgs["dask"]), dry_run=True)  # warm: workers import prefect + regkeeper
            gc(config_path=str(cfgs["threads"]), dry_run=True)
            wall: dict[str, list[float]] = {"threads": [], "dask": []}
            reqs: dict[str, list[int]] = {"threads": [], "dask": []}
            cpu: dict[str, list[float]] = {"threads": [], "dask": []}
            for _ in range(a.rounds):
                for name in ("threads", "dask"):
                    reg.clear_access_log()
                    w0 = sum(client.run(time.process_time).values())
                    c0, t0 = cpu_self(), time.perf_counter()
                    out = gc(config_path=str(cfgs[name]), dry_run=True)
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(cpu_self() - c0 + sum(client.run(time.process_time).values()) - w0)
                    reqs[name].append(len(reg.access_log()))
                    assert out["summary"]["tags to delete"] == a.repos * (a.tags - 1)
    finally:
        reg.stop()
    med = {k: statistics.median(v) for k, v in wall.items()}
    print(f"gc dry run, {a.repos} repositories x {a.tags} tags, {a.workers} Dask worker processes")
    for k in ("threads", "dask"):
        print(
            f"  {k:8s} wall {med[k]:.2f}s  cpu {statistics.median(cpu[k]):.2f}s  "
            f"registry requests {statistics.median(reqs[k]):.0f}"
        )
    print(f"  dask/threads wall ratio {med['dask'] / med['threads']:.2f}")


if __name__ == "__main__":
    main()
