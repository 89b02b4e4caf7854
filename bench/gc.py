"""gc dry run at scale: the Prefect-free core vs the gc flow, side by side in the same process, to
show Prefect's share of a run (goal < 25%).

    python bench/gc.py [--repos 50] [--tags 20] [--repeat 3]     # 1k tags

A generated registry (the older half of each repository's tags aged past gc.days through the
tag link mtimes, so the plan deletes about half) and a running Prefect server (``prefect server
start`` on 127.0.0.1, started and stopped by PID, PREFECT_API_URL set) are shared by both sides.
The fixed cost of a command-line run (import prefect, server connect, the first flow run) is paid
once before the timed runs by a warm-up flow and reported apart (bench/cli.py measures it).

core = what the flow does, without Prefect: recover run state, scan (storage configured), read
Kubernetes (not configured), plan, build and write the report.
flow = ``flows.gc.gc(dry_run=True)``: the same steps as Prefect tasks (one scan task per batch of
repositories), the report published as artifacts.
Each side runs cold (empty digest cache) and warm (the cache its cold run filled), alternating,
``--repeat`` times; medians of wall and CPU seconds of this process (all threads; the Prefect
server's own CPU is another process and is not counted).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cli import start_server  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.rkconfig import registry_entry, write_config  # noqa: E402


def generate(reg: RegistryServer, repos: int, tags: int) -> int:
    imgs = images.push_many(reg.url, n_repos=repos, tags_per_repo=tags, prefix="bench/gc", seed=3)
    old = time.time() - 90 * 86400
    assert reg.root is not None
    for im in imgs:
        if int(im.tag.split("-")[1]) < tags // 2:
            link = Path(reg.root) / "docker/registry/v2/repositories" / im.repo / "_manifests/tags"
            os.utime(link / im.tag / "current/link", (old, old))
    return len(imgs)


def core_dry_run(cfg_path: str) -> dict:
    from regkeeper import prune
    from regkeeper.context import RunContext
    from regkeeper.inventory import scan
    from regkeeper.runstate import Owner, RunState, recover_windows

    ctx = RunContext.load(cfg_path)
    try:
        name = ctx.registry_name(None, ctx.config.gc.registry if ctx.config.gc else None)
        recover_windows(RunState.for_config(ctx.config, Owner.current("gc", None)), config=ctx.config)
        inv = scan(ctx.client(name), storage=ctx.storage(name))
        ks = prune.read_kubernetes(ctx, name)
        plan = prune.gc_plan(ctx, name, inv, ks)
        rep = prune.build_report("gc", name, plan, inv=inv, kstate=ks, dry_run=True)
        rep.finish()
        rep.write(ctx.reports_dir())
        return rep.summary
    finally:
        ctx.close()


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=50)
    ap.add_argument("--tags", type=int, default=20, help="tags per repository")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-gc-"))
    home = tmp / "prefect-home"
    home.mkdir()
    reg = server = None
    try:
        reg = RegistryServer(tmp / "reg")
        t0 = time.perf_counter()
        n = generate(reg, a.repos, a.tags)
        print(f"generated {n} tags in {a.repos} repositories in {time.perf_counter() - t0:.1f}s")
        server, api = start_server(home)
        os.environ.update(
            PREFECT_API_URL=api,
            PREFECT_HOME=str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_LOGGING_LEVEL="WARNING",
        )

        def config(label: str) -> str:
            d = tmp / label
            d.mkdir(exist_ok=True)
            gc = {"days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0}
            return str(write_config(d / "regkeeper.yaml", [registry_entry(reg)], gc=gc))

        t = time.perf_counter()
        from prefect import flow

        @flow
        def warmup():
            return 1

        warmup()
        fixed = time.perf_counter() - t
        from flows.gc import gc

        core_dry_run(config("warm-core"))  # imports and page cache, both sides
        gc(config_path=config("warm-flow"), dry_run=True)
        rows: dict[str, list[tuple[float, float]]] = {}
        expect = None
        for i in range(a.repeat):
            _, w, c = timed(warmup)  # a flow run's own cost: the floor of any flow
            rows.setdefault("bare flow", []).append((w, c))
            for side in ("core", "flow"):
                cfg = config(f"{side}{i}")
                for temp in ("cold", "warm"):
                    if side == "core":
                        summ, w, c = timed(lambda cfg=cfg: core_dry_run(cfg))
                    else:
                        res, w, c = timed(lambda cfg=cfg: gc(config_path=cfg, dry_run=True))
                        summ = res["summary"]
                    got = (summ["tags scanned"], summ["tags to delete"])
                    assert expect is None or got == expect, (side, temp, got, expect)
                    expect = got
                    rows.setdefault(f"{side} {temp}", []).append((w, c))
        med = {
            k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
            for k, v in rows.items()
        }
        assert expect is not None
        print(
            f"{n} tags, gc dry run plans {expect[1]} deletes; median of {a.repeat}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'':12}{'core wall':>10}{'flow wall':>10}{'Prefect':>9}{'core CPU':>10}{'flow CPU':>10}{'Prefect':>9}"
        )
        worst = 0.0
        bw, bc = med["bare flow"]
        beyond = []
        for temp in ("cold", "warm"):
            cw, cc = med[f"core {temp}"]
            fw, fc = med[f"flow {temp}"]
            sw, sc = max(0.0, fw - cw) / fw, max(0.0, fc - cc) / fc
            worst = max(worst, sw, sc)
            print(f"{temp:12}{cw:>9.2f}s{fw:>9.2f}s{sw:>8.0%}{cc:>9.2f}s{fc:>9.2f}s{sc:>8.0%}")
            beyond.append(
                f"{temp} {max(0.0, fw - cw - bw) / fw:.0%} wall, {max(0.0, fc - cc - bc) / fc:.0%} CPU"
            )
        print(
            f"a bare flow run (the fixed cost of any flow run: create, states, heartbeat stop) "
            f"{bw:.2f}s wall, {bc:.2f}s CPU; Prefect's share beyond it: {'; '.join(beyond)}"
        )
        print(f"fixed cost apart: first flow run of the process (server connect, warm-up) {fixed:.2f}s")
        print(f"goal: Prefect's share < 25%: {'met' if worst < 0.25 else 'NOT met'} (worst {worst:.0%})")
    finally:
        if server is not None:
            server.stop(timeout=15)
        if reg is not None:
            reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
