"""gc end to end on a generated registry: the Prefect-free core pipeline vs the Prefect flow,
on two identical registries in the same run, to show Prefect's share of a run.

    python bench/gc.py [--repos 30] [--tags 10]

Each repository gets --tags tags, the older half aged past gc.days via tag link mtimes, so gc
deletes about half. Prefect's fixed cost (temporary local server start) is measured separately
with an empty warm-up flow and reported apart from the per-run overhead.
"""

import argparse
import os
import shutil
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


def generate(reg, repos: int, tags: int) -> int:
    imgs = images.push_many(reg.url, n_repos=repos, tags_per_repo=tags, prefix="bench/gc", seed=3)
    old = time.time() - 90 * 86400
    for im in imgs:
        j = int(im.tag.split("-")[1])
        if j < tags // 2:
            link = (
                Path(reg.root)
                / "docker/registry/v2/repositories"
                / im.repo
                / "_manifests/tags"
                / im.tag
                / "current/link"
            )
            os.utime(link, (old, old))
    return len(imgs)


def core_pipeline(cfg_path: str) -> dict:
    from regkeeper import prune
    from regkeeper.context import RunContext
    from regkeeper.inventory import scan

    ctx = RunContext.load(cfg_path)
    name = ctx.registry_name(None)
    inv = scan(ctx.client(name), storage=ctx.storage(name))
    ks = prune.read_kubernetes(ctx, name)
    plan = prune.gc_plan(ctx, name, inv, ks)
    res = prune.delete_batch(ctx, name, plan.manifests_to_delete(), inv)
    ver = prune.run_verify(ctx, name, inv, plan, everything=False)
    rep = prune.build_report("gc", name, plan, inv=inv, kstate=ks, deleted=res, verified=ver)
    rep.write(ctx.reports_dir())
    return rep.summary


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=30)
    ap.add_argument("--tags", type=int, default=10)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-gc-"))
    regs = [RegistryServer(tmp / "a"), RegistryServer(tmp / "b")]
    try:
        n = [generate(r, a.repos, a.tags) for r in regs][0]
        cfgs = []
        for i, r in enumerate(regs):
            d = tmp / f"cfg{i}"
            d.mkdir()
            cfgs.append(
                str(
                    write_config(
                        d / "regkeeper.yaml",
                        [registry_entry(r)],
                        gc={"days": 30, "keepLast": 0, "protect": []},
                    )
                )
            )
        t = time.perf_counter()
        s_core = core_pipeline(cfgs[0])
        core = time.perf_counter() - t

        from prefect import flow

        @flow
        def warmup():
            return 1

        t = time.perf_counter()
        warmup()
        fixed = time.perf_counter() - t

        from flows.gc import gc

        t = time.perf_counter()
        res = gc(config_path=cfgs[1])
        flow_t = time.perf_counter() - t
        assert res["summary"]["tags deleted"] == s_core["tags deleted"], (res["summary"], s_core)
        print(f"{n} tags in {a.repos} repositories; gc deletes {s_core['tags deleted']} tags")
        print(f"  core pipeline (no Prefect)     {core:.2f}s")
        print(
            f"  gc flow (Prefect, warm server) {flow_t:.2f}s   ratio {flow_t / core:.2f}x; "
            f"Prefect's share {max(0.0, flow_t - core):.2f}s ({max(0.0, flow_t - core) / flow_t:.0%})"
        )
        print(f"  fixed cost: Prefect temporary server start (first flow of a process) {fixed:.2f}s")
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
