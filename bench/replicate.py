"""Benchmark: regkeeper replication vs ``skopeo sync``, cold and warm, in the same run.

Workload (generated, reproducible from --seed): N repositories x M tags of images that share
three base layers (6 MiB, 3 MiB, 1 MiB) and each carry one unique 256 KiB layer and a config,
plus multi-arch indexes (2 platforms, untagged children) with cosign-style ``.sig`` tags.
Default: 20 x 10 images + 10 indexes + 10 signatures = 220 tags.

Peers, each against its own fresh target registry (distribution 2.8 on loopback), run one after
the other on the same machine:
- skopeo: ``skopeo sync --all --preserve-digests --src docker --dest docker
  --src-tls-verify=false --dest-tls-verify=false SRC/<repo> DST/<parent path of repo>``,
  one call per repository (what a cron script over the catalog does). Without ``--scoped``,
  sync places ``SRC/a/b/c`` at ``DST/a/b/c`` when given ``DST/a/b`` (checked at the end).
- regkeeper: the replication core (``replicate_target``) in a fresh Python process per run
  (interpreter start and imports included), concurrency = the rule's default (8).
Cold = empty target; warm = the same command again (repeated, alternating the peers, medians). Both targets are checked to
hold every source tag with the source digest; the warm runs' writes are counted from each
target's access log. The CLI's fixed cost (``import prefect`` + Prefect's local server when no
PREFECT_API_URL is set) is not part of the engine comparison; ``--cli`` measures it separately.

    python bench/replicate.py [--repos 20] [--tags 10] [--repeat 1] [--warm-repeat 5] [--cli]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.replicate_minimum import per_tag, protocol_minimum  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
BASE_SIZES = (6 * 1024 * 1024, 3 * 1024 * 1024, 1024 * 1024)
UNIQUE_SIZE = 256 * 1024
WRITES = {"PUT", "POST", "PATCH", "DELETE"}

_WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import replicate_target
t_import = time.perf_counter() - t0
src = RegistryClient("primary", sys.argv[1], verify=False)
dst = RegistryClient("replica", sys.argv[2], verify=False)
rule = ReplicationRule.model_validate({"from": "primary", "to": ["replica"]})
res = replicate_target(src, dst, rule, "replica", verify=True)  # the flow always reads back
print(json.dumps({"status": res.status, "failed": res.failed_items, "totals": res.totals(),
                  "plan_seconds": res.plan.stats.get("seconds"), "import_seconds": t_import,
                  "target_requests": res.target_requests, "source_requests": dict(src.stats)}))
"""


# ---------------------------------------------------------------- workload


def generate(url: str, n_repos: int, n_tags: int, seed: int) -> dict:
    rng = random.Random(seed)
    bases = [rng.randbytes(n) for n in BASE_SIZES]
    repos = [f"bench/svc-{i:02d}" if i % 4 else f"bench/team-{i // 4}/svc-{i:02d}" for i in range(n_repos)]
    first = repos[0]
    base_descs = []
    for b in bases:
        d, n = images.push_blob(url, first, b, verify=False)
        base_descs.append(
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": n, "digest": d}
        )

    def one_repo(i: int) -> int:
        repo = repos[i]
        r = random.Random(f"{seed}/{i}")
        if i:
            for bd in base_descs:
                _mount(url, repo, bd["digest"], first)
        for j in range(n_tags):
            own = r.randbytes(UNIQUE_SIZE)
            od, on = images.push_blob(url, repo, own, verify=False)
            layers = base_descs + [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": on, "digest": od}
            ]
            cfg = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "created": "2024-01-01T00:00:00Z",
                    "config": {"Labels": {"build": f"{i}-{j}"}},
                    "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
                }
            ).encode()
            cd, cn = images.push_blob(url, repo, cfg, verify=False)
            man = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": images.DOCKER_MANIFEST,
                    "config": {"mediaType": images.DOCKER_CONFIG, "size": cn, "digest": cd},
                    "layers": layers,
                },
                indent=3,
            ).encode()
            images.put_manifest(url, repo, f"1.{j}.0", man, images.DOCKER_MANIFEST, verify=False)
        count = n_tags
        if i < 5:  # multi-arch indexes with signatures in the first repositories
            for k in range(2):
                idx = images.push_index(url, repo, f"multi-{k}", verify=False, seed=f"{seed}/{i}/idx{k}")
                images.push_signature(url, repo, idx.digest, "sig", verify=False)
                count += 2
        return count

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(one_repo, range(n_repos)))
    return {"repositories": repos, "tags": sum(counts)}


def _mount(url: str, repo: str, digest: str, from_repo: str) -> None:
    import requests

    r = requests.post(
        f"{url}/v2/{repo}/blobs/uploads/",
        params={"mount": digest, "from": from_repo},
        timeout=30,
        verify=False,
    )
    if r.status_code != 201:
        raise RuntimeError(f"mount {digest} into {repo}: HTTP {r.status_code}")


# ---------------------------------------------------------------- peers


def run_skopeo(src: RegistryServer, dst: RegistryServer, repos: list[str]) -> float:
    t0 = time.perf_counter()
    for repo in repos:
        parent = repo.rsplit("/", 1)[0] if "/" in repo else ""
        dest = f"{dst.host}/{parent}" if parent else dst.host
        cmd = [
            SKOPEO,
            "sync",
            "--all",
            "--preserve-digests",
            "--src",
            "docker",
            "--dest",
            "docker",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"{src.host}/{repo}",
            dest,
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"skopeo sync {repo} failed ({r.returncode}): {r.stderr[-1500:]}")
    return time.perf_counter() - t0


def run_regkeeper(src: RegistryServer, dst: RegistryServer) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", _WORKER, src.url, dst.url],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"regkeeper worker failed: {r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["status"] != "ok":
        raise RuntimeError(f"regkeeper run not ok: {out['failed'][:5]}")
    return wall, out


def run_cli_warm(tmp: Path, src: RegistryServer, dst: RegistryServer) -> float | None:
    """``regkeeper run replicate`` end to end (warm), to show the CLI's fixed cost."""
    exe = shutil.which("regkeeper")
    cmd = [exe] if exe else [sys.executable, "-m", "app.cli"]
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"""
mirrorRepositories:
- {{name: primary, url: {src.url}}}
- {{name: replica, url: {dst.url}}}
replication: [{{from: primary, to: [replica]}}]
reports: {{directory: {tmp / "reports"}}}
cacheDir: {tmp / "cache"}
""")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(tmp / "prefect-home"),
    }
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd + ["run", "replicate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    if r.returncode != 0:
        print(f"  (cli run failed, exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]})")
        return None
    return time.perf_counter() - t0


# ---------------------------------------------------------------- checks


def snapshot(reg: RegistryServer, repos: list[str]) -> dict:
    def one(repo):
        return repo, {
            t: images.head_manifest(reg.url, repo, t, verify=False)
            for t in images.list_tags(reg.url, repo, verify=False)
        }

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, repos))


def writes(reg: RegistryServer) -> int:
    return sum(1 for e in reg.access_log(settle=0.3) if e.method in WRITES)


# ---------------------------------------------------------------- main


def one_round(tmp: Path, n_repos: int, n_tags: int, seed: int, cli: bool, warm_repeat: int) -> dict:
    src = RegistryServer(tmp / "src")
    ours = RegistryServer(tmp / "dst-regkeeper")
    peer = RegistryServer(tmp / "dst-skopeo")
    try:
        t0 = time.perf_counter()
        wl = generate(src.url, n_repos, n_tags, seed)
        gen_s = time.perf_counter() - t0
        want = snapshot(src, wl["repositories"])
        assert sum(len(v) for v in want.values()) == wl["tags"]
        minimum = protocol_minimum(src.url, wl["repositories"])

        sk_cold = run_skopeo(src, peer, wl["repositories"])
        rk_cold, rk_cold_out = run_regkeeper(src, ours)
        for name, reg in (("skopeo", peer), ("regkeeper", ours)):
            got = snapshot(reg, wl["repositories"])
            if got != want:
                bad = [(r, t) for r in want for t in want[r] if got.get(r, {}).get(t) != want[r][t]]
                raise RuntimeError(f"{name}: {len(bad)} tags differ after the cold run, e.g. {bad[:3]}")
        # warm runs are repeatable: alternate the peers and keep the medians
        sk_w, rk_w, rk_engine = [], [], []
        sk_warm_writes = rk_warm_writes = 0
        for _ in range(warm_repeat):
            peer.clear_access_log()
            sk_w.append(run_skopeo(src, peer, wl["repositories"]))
            sk_warm_writes = max(sk_warm_writes, writes(peer))
            ours.clear_access_log()
            w, rk_warm_out = run_regkeeper(src, ours)
            rk_w.append(w)
            rk_engine.append(rk_warm_out["totals"]["seconds"])
            rk_warm_writes = max(rk_warm_writes, writes(ours))
        sk_warm, rk_warm = statistics.median(sk_w), statistics.median(rk_w)
        rk_warm_engine = statistics.median(rk_engine)
        cli_s = run_cli_warm(tmp, src, ours) if cli else None
        return {
            "tags": wl["tags"],
            "repos": n_repos,
            "generate_s": gen_s,
            "skopeo_cold": sk_cold,
            "skopeo_warm": sk_warm,
            "regkeeper_cold": rk_cold,
            "regkeeper_warm": rk_warm,
            "regkeeper_warm_engine": rk_warm_engine,
            "regkeeper_cold_engine": rk_cold_out["totals"]["seconds"],
            "skopeo_warm_writes": sk_warm_writes,
            "regkeeper_warm_writes": rk_warm_writes,
            "rk_cold": rk_cold_out,
            "rk_warm": rk_warm_out,
            "cli_warm": cli_s,
            "minimum": minimum,
        }
    finally:
        for reg in (src, ours, peer):
            reg.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repos", type=int, default=20)
    ap.add_argument("--tags", type=int, default=10, help="image tags per repository")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (fresh registries each); medians shown")
    ap.add_argument("--warm-repeat", type=int, default=5, help="warm runs per peer (alternating); median")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cli", action="store_true", help="also time `regkeeper run replicate` (warm)")
    args = ap.parse_args(argv)
    if not os.access(SKOPEO, os.X_OK):
        print("skopeo is not installed (Debian package 'skopeo')", file=sys.stderr)
        return 2
    rounds = []
    for i in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="rk-bench-repl-"))
        try:
            rounds.append(one_round(tmp, args.repos, args.tags, args.seed + i, args.cli, args.warm_repeat))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    med = {
        k: statistics.median(r[k] for r in rounds)
        for k in (
            "skopeo_cold",
            "skopeo_warm",
            "regkeeper_cold",
            "regkeeper_warm",
            "regkeeper_cold_engine",
            "regkeeper_warm_engine",
        )
    }
    r0 = rounds[0]
    t = r0["rk_cold"]["totals"]
    cold_ratio = med["skopeo_cold"] / med["regkeeper_cold"]
    warm_ratio = med["skopeo_warm"] / med["regkeeper_warm"]
    sk_v = subprocess.run([SKOPEO, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"workload: {r0['tags']} tags in {r0['repos']} repositories, 3 shared base layers "
        f"({sum(BASE_SIZES) // 2**20} MiB) + {UNIQUE_SIZE // 1024} KiB unique layer per image, "
        f"10 multi-arch indexes + 10 .sig tags (generated in {r0['generate_s']:.1f}s); "
        f"{len(rounds)} cold round(s), {args.warm_repeat} warm runs each, medians; {sk_v}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':22}{'skopeo sync':>14}{'regkeeper':>12}{'ratio':>9}")
    print(
        f"{'cold (empty target)':22}{med['skopeo_cold']:>13.2f}s{med['regkeeper_cold']:>11.2f}s{cold_ratio:>8.1f}x"
    )
    print(
        f"{'warm (nothing to do)':22}{med['skopeo_warm']:>13.2f}s{med['regkeeper_warm']:>11.2f}s{warm_ratio:>8.1f}x"
    )
    print(f"{'  engine only (in-process, no interpreter start)':>22}")
    print(
        f"{'  cold':22}{'':>14}{med['regkeeper_cold_engine']:>11.2f}s"
        f"{med['skopeo_cold'] / med['regkeeper_cold_engine']:>8.1f}x"
    )
    print(
        f"{'  warm':22}{'':>14}{med['regkeeper_warm_engine']:>11.2f}s"
        f"{med['skopeo_warm'] / med['regkeeper_warm_engine']:>8.1f}x"
    )
    print(
        f"warm-run writes on the target: skopeo {r0['skopeo_warm_writes']}, regkeeper {r0['regkeeper_warm_writes']}"
    )
    print(
        f"regkeeper cold: {t['copied']} tags copied, {t['blobs_uploaded']} blobs uploaded "
        f"({t['bytes_uploaded'] / 2**20:.1f} MiB), {t['blobs_mounted']} mounted "
        f"({t['bytes_mounted'] / 2**20:.1f} MiB); target requests {r0['rk_cold']['target_requests']}"
    )
    print(
        f"regkeeper warm: target requests {r0['rk_warm']['target_requests']}; "
        f"python start + imports {r0['rk_warm']['import_seconds']:.2f}s of {med['regkeeper_warm']:.2f}s"
    )
    m, n_tags = r0["minimum"], r0["tags"]
    print("requests per tag (source / target; the flow's read-back included) vs the protocol minimum:")
    for temp in ("cold", "warm"):
        out = r0[f"rk_{temp}"]
        print(
            f"  {temp}: regkeeper {per_tag(out['source_requests'], n_tags):.2f} / "
            f"{per_tag(out['target_requests'], n_tags):.2f}, minimum {m[temp + '_source']:.2f} / "
            f"{m[temp + '_target']:.2f}; source {out['source_requests']}, target {out['target_requests']}"
        )
    if r0.get("cli_warm") is not None:
        print(
            f"`regkeeper run replicate` (warm, CLI incl. import prefect + Prefect local server): "
            f"{r0['cli_warm']:.1f}s; fixed cost ~{r0['cli_warm'] - med['regkeeper_warm']:.1f}s"
        )
    print(
        f"goal >=3x cold: {'met' if cold_ratio >= 3 else 'NOT met'} ({cold_ratio:.1f}x); "
        f">=5x warm: {'met' if warm_ratio >= 5 else 'NOT met'} ({warm_ratio:.1f}x process wall)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
