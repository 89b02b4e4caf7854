"""What the quarantine adds to a gc run that deletes 150 tags: quarantine on vs off, side by side
in the same run, on fresh identical registries (goal: wall under 1.3x).

    python bench/quarantine.py [--repos 15] [--tags 20] [--repeat 3]

Each repetition generates two identical registries (distribution 2.8, filesystem storage; the
older half of each repository's tags aged past gc.days through the tag link mtimes, so the plan
deletes ``repos * tags / 2`` tags) and runs the gc pipeline's core on each (scan, plan, the
quarantine release plan when on, delete through the one delete path, no reclaim), the order of
the two sides alternating. Reported: medians of wall and CPU seconds of this process, and the
requests each side sent (the registry's access log, every HTTP request counted), with the
ratio on / off.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gc import generate  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.rkconfig import registry_entry, write_config  # noqa: E402

NAME = "local-registry"


def gc_run(cfg_path: str) -> dict:
    from regkeeper import prune
    from regkeeper.context import RunContext
    from regkeeper.inventory import scan

    ctx = RunContext.load(cfg_path)
    try:
        inv = scan(ctx.client(NAME), storage=ctx.storage(NAME))
        ks = prune.KubeState(None)
        plan = prune.gc_plan(ctx, NAME, inv, ks)
        rp = prune.release_plan(ctx, NAME, inv, ks)
        prune.run_release(ctx, NAME, rp)
        res = prune.delete_batch(
            ctx, NAME, plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan), plan=plan
        )
        assert not res.failed and not res.skipped, (res.failed[:3], res.skipped[:3])
        return {
            "tags deleted": len(plan.deleted_tags()),
            "manifests": len(res.deleted),
            "held": len(res.held),
        }
    finally:
        ctx.close()


def one_side(
    tmp: Path, label: str, repos: int, tags: int, quarantine: bool
) -> tuple[dict, float, float, int]:
    reg = RegistryServer(tmp / label)
    try:
        generate(reg, repos, tags)
        gc = {"days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0}
        extra = {"quarantine": {"window": "7d"}} if quarantine else {}
        (tmp / label / "cfg").mkdir()
        cfg = str(write_config(tmp / label / "cfg" / "regkeeper.yaml", [registry_entry(reg)], gc=gc, **extra))
        reg.clear_access_log()
        c0, t0 = time.process_time(), time.perf_counter()
        out = gc_run(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return out, wall, cpu, len(reg.access_log())
    finally:
        reg.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=15)
    ap.add_argument("--tags", type=int, default=20, help="tags per repository (the older half is deleted)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-quarantine-"))
    rows: dict[str, list[tuple[float, float, int]]] = {"off": [], "on": []}
    for i in range(a.repeat):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for side in order:
            out, w, c, n = one_side(tmp, f"{side}{i}", a.repos, a.tags, side == "on")
            assert out["tags deleted"] == a.repos * (a.tags // 2), out
            assert (out["held"] > 0) == (side == "on"), out
            rows[side].append((w, c, n))
            print(f"run {i} {side:>3}: wall {w:6.2f}s cpu {c:6.2f}s requests {n:5d}  {out}")
    med = {k: tuple(statistics.median(x[j] for x in v) for j in range(3)) for k, v in rows.items()}
    off, on = med["off"], med["on"]
    print(f"\ngc deleting {a.repos * (a.tags // 2)} tags, medians of {a.repeat}:")
    print(f"{'':>16} {'wall s':>8} {'cpu s':>8} {'requests':>9}")
    for k in ("off", "on"):
        print(f"quarantine {k:>5} {med[k][0]:8.2f} {med[k][1]:8.2f} {med[k][2]:9.0f}")
    print(
        f"ratio on/off     {on[0] / off[0]:8.2f} {on[1] / off[1]:8.2f} {on[2] / off[2]:9.2f}  (goal wall < 1.3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
