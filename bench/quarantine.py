"""What the quarantine adds to a gc run that deletes 150 tags: quarantine on vs off, side by side
in the same run, on fresh identical registries (goal: wall under 1.3x).

    python bench/quarantine.py [--mode core|run|both] [--repos 15] [--tags 20] [--repeat 3]

Each repetition generates two identical registries (distribution 2.8, filesystem storage; the
older half of each repository's tags aged past gc.days through the tag link mtimes, so the plan
deletes ``repos * tags / 2`` tags) and runs the gc pipeline's core on each (scan, plan, the
quarantine release plan when on, delete through the one delete path, no reclaim), the order of
the two sides alternating. Reported: medians of wall and CPU seconds of this process, and the
requests each side sent (the registry's access log, every HTTP request counted), with the
ratio on / off.

``--mode core`` (the default; the strict figure) measures the pipeline's core in this process as
above. ``--mode run`` measures the whole gc run as a user runs it: ``regkeeper run gc`` through
the CLI (a subprocess, Prefect's temporary local server included), with the reclaim in command
mode (the registry restarted read-only, ``garbage-collect`` inside the window, read-write again)
and the report written. There: wall of the whole command, the flow body's wall ("work", as the
CLI prints it), CPU seconds of the command and its children, and every request the registry
saw. ``both`` runs the two modes one after the other.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gc import generate  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402
from tests.support.rkconfig import RegistryControl, registry_entry, write_config  # noqa: E402

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


def cli_run(cfg_path: str) -> tuple[dict, float, float]:
    """``regkeeper run gc`` as a user runs it: (its summary, the flow body's wall "work" as the
    CLI prints it, CPU seconds of the command and its children)."""
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "gc", "--config", cfg_path],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr[-3000:]
    work = re.search(r"finished: work ([0-9.]+)s", out.stderr)
    assert work, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return summary, float(work.group(1)), cpu


def one_side(
    tmp: Path, label: str, repos: int, tags: int, quarantine: bool, mode: str = "core"
) -> tuple[dict, tuple[float, ...], int]:
    """One side on a fresh registry: (what it did, (wall, cpu[, work wall]), requests)."""
    reg = RegistryServer(tmp / label)
    ctl = None
    try:
        generate(reg, repos, tags)
        gc = {"days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 1.0}
        extra = {"quarantine": {"window": "7d"}} if quarantine else {}
        entry = registry_entry(reg)
        if mode == "run":
            ctl = RegistryControl(reg)
            entry["reclaim"] = ctl.reclaim_config()
        (tmp / label / "cfg").mkdir()
        cfg = str(write_config(tmp / label / "cfg" / "regkeeper.yaml", [entry], gc=gc, **extra))
        reg.clear_access_log()
        c0, t0 = time.process_time(), time.perf_counter()
        if mode == "run":
            summary, work, cpu = cli_run(cfg)
            wall = time.perf_counter() - t0
            assert ctl is not None and ctl.calls == ["readonly", "readwrite"], ctl.calls
            reports = list((tmp / label / "cfg" / "reports").rglob("*.html"))
            assert reports, "no report written"
            out = {
                "tags deleted": summary.get("tags deleted", summary.get("tags to delete")),
                "held": summary.get("deletes held in quarantine (undoable)", 0),
            }
            return out, (wall, cpu, work), len(reg.access_log())
        out = gc_run(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return out, (wall, cpu), len(reg.access_log())
    finally:
        if ctl is not None:
            ctl.stop()
        reg.stop()


def measure(tmp: Path, mode: str, repos: int, tags: int, repeat: int) -> None:
    """``repeat`` pairs of sides (the order alternating), then the medians and ratios."""
    # imported before any side is timed: otherwise the first side of the process pays them
    import regkeeper.context  # noqa: F401
    import regkeeper.inventory  # noqa: F401
    import regkeeper.prune  # noqa: F401
    import regkeeper.quarantine.hold  # noqa: F401
    import regkeeper.quarantine.release  # noqa: F401

    rows: dict[str, list[tuple[float, ...]]] = {"off": [], "on": []}
    for i in range(repeat):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for side in order:
            out, t, n = one_side(tmp, f"{mode}-{side}{i}", repos, tags, side == "on", mode)
            assert out["tags deleted"] == repos * (tags // 2), out
            assert (out["held"] > 0) == (side == "on"), out
            rows[side].append((*t, n))
            work = f" work {t[2]:6.2f}s" if len(t) > 2 else ""
            print(f"{mode} {i} {side:>3}: wall {t[0]:6.2f}s cpu {t[1]:6.2f}s{work} requests {n:5d}  {out}")
    cols = ["wall s", "cpu s"] + (["work s"] if mode == "run" else []) + ["requests"]
    med = {k: [statistics.median(x[j] for x in v) for j in range(len(cols))] for k, v in rows.items()}
    what = (
        "gc's core (scan, plan, delete)"
        if mode == "core"
        else "whole `regkeeper run gc` (CLI, reclaim, report)"
    )
    print(f"\n{what}, deleting {repos * (tags // 2)} tags, medians of {repeat}:")
    print(f"{'':>16}" + "".join(f" {c:>9}" for c in cols))
    for k in ("off", "on"):
        print(f"quarantine {k:>5}" + "".join(f" {v:9.2f}" for v in med[k]))
    ratio = "".join(f" {on / off:9.2f}" for on, off in zip(med["on"], med["off"], strict=True))
    print(f"ratio on/off    {ratio}  (goal wall < 1.3)\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["core", "run", "both"], default="core")
    ap.add_argument("--repos", type=int, default=15)
    ap.add_argument("--tags", type=int, default=20, help="tags per repository (the older half is deleted)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-quarantine-"))
    for mode in ("core", "run") if a.mode == "both" else (a.mode,):
        measure(tmp, mode, a.repos, a.tags, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
