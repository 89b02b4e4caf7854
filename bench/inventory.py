"""Inventory scan benchmark: regkeeper's scan vs a bare concurrent scan, same registry, same run.

    python bench/inventory.py [--repos 40] [--tags 6] [--workers 8] [--rounds 3] [--data DIR]
    python bench/inventory.py --repos 200 --tags 50          # 10k tags

Bare scan = catalog + tags/list per repository + HEAD per tag, ``--workers`` threads, one pooled
session (the least any tool must do to know every tag's digest).
regkeeper cold = an empty digest cache, storage configured (push times from the registry's
filesystem, so no config is fetched): catalog + tags + one GET per tag.
regkeeper warm = the same scan again on the filled cache: catalog + tags + one HEAD per tag,
every known manifest from the disk cache (one file read, one digest check each).
Each line gives wall seconds, CPU seconds of this process (all threads) and requests; ratios
are against the bare scan of the same round, medians of ``--rounds``. Also counts manifest/blob
GETs of the warm scan from the registry's access log (goal: 0), the files in the digest cache
per manifest (goal: 1) and the peak of requests in flight (bounded by the client's concurrency).
``--data DIR`` keeps the generated registry there and reuses it on the next run.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from regkeeper.cache import DigestCache  # noqa: E402
from regkeeper.inventory import scan  # noqa: E402
from regkeeper.models import ACCEPT_MANIFESTS  # noqa: E402
from regkeeper.oci import RegistryClient  # noqa: E402
from regkeeper.storage import FilesystemStorage  # noqa: E402
from regkeeper.util import bounded_map  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


def bare_scan(url: str, workers: int) -> tuple[int, int]:
    """(tags, requests)."""
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=workers + 4))
    n_req = 0
    repos, nxt = [], f"{url}/v2/_catalog?n=1000"
    while nxt:
        r = s.get(nxt, timeout=30, verify=False)
        n_req += 1
        repos += r.json().get("repositories") or []
        link = r.headers.get("Link")
        nxt = url + link.split(";")[0].strip("<>") if link else None
    tag_lists = bounded_map(
        lambda repo: (
            repo,
            s.get(f"{url}/v2/{repo}/tags/list?n=1000", timeout=30, verify=False).json().get("tags") or [],
        ),
        repos,
        workers,
    )
    pairs = [(repo, t) for _, (repo, tags), _ in tag_lists for t in tags]
    heads = bounded_map(
        lambda p: s.head(
            f"{url}/v2/{p[0]}/manifests/{p[1]}",
            timeout=30,
            verify=False,
            headers={"Accept": ACCEPT_MANIFESTS},
        ).headers["Docker-Content-Digest"],
        pairs,
        workers,
    )
    assert all(e is None for _, _, e in heads)
    return len(pairs), n_req + len(repos) + len(pairs)


def timed(fn):
    """(result, wall s, CPU s of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def generate(reg: RegistryServer, repos: int, tags: int) -> None:
    marker = reg.dir / "generated.txt"
    want = f"{repos}x{tags}"
    if marker.exists() and marker.read_text() == want:
        print(f"reusing the generated registry in {reg.dir} ({want})")
        return
    t0 = time.perf_counter()
    images.push_many(reg.url, n_repos=repos, tags_per_repo=tags, prefix="bench/app", workers=8, seed=1)
    marker.write_text(want)
    print(
        f"generated {repos} repositories x {tags} tags = {repos * tags} tags in {time.perf_counter() - t0:.1f}s"
    )


def cache_files(root: Path) -> tuple[int, int]:
    """(manifest files, other files) under the digest cache's manifests directory."""
    files = [p for p in (root / "manifests").rglob("*") if p.is_file()]
    sidecars = [p for p in files if p.suffix]
    return len(files) - len(sidecars), len(sidecars)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=40)
    ap.add_argument("--tags", type=int, default=6, help="tags per repository")
    ap.add_argument("--workers", type=int, default=8, help="bare scan threads = client concurrency")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", help="keep the generated registry in this directory (reused next time)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-inv-"))
    reg = RegistryServer(Path(a.data) if a.data else tmp / "reg")
    try:
        generate(reg, a.repos, a.tags)
        assert reg.root is not None
        storage = FilesystemStorage(reg.root)
        rows: dict[str, list[tuple[float, float, int]]] = {"bare": [], "cold": [], "warm": []}
        warm_gets = peak = 0
        files = (0, 0)
        n = 0
        for rnd in range(a.rounds):
            (n, bare_req), w, c = timed(lambda: bare_scan(reg.url, a.workers))
            rows["bare"].append((w, c, bare_req))
            cdir = tmp / f"cache{rnd}"
            for kind in ("cold", "warm"):
                client = RegistryClient("bench", reg.url, cache=DigestCache(cdir), concurrency=a.workers)
                if kind == "warm":
                    reg.clear_access_log()
                inv, w, c = timed(lambda cl=client: scan(cl, storage=storage))
                assert inv.tag_count == n, (inv.tag_count, n)
                rows[kind].append((w, c, sum(inv.stats["requests"].values())))
                peak = max(peak, getattr(client, "inflight_peak", 0))
                client.close()
            log = reg.access_log(min_entries=1)
            warm_gets = len(
                [e for e in log if e.method == "GET" and ("/manifests/" in e.path or "/blobs/" in e.path)]
            )
            files = cache_files(cdir)
        med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
        bw, bc, _ = med["bare"]
        print(
            f"{n} tags, {a.workers} workers / client concurrency, median of {a.rounds} rounds; "
            f"threads now {threading.active_count()}"
        )
        print(f"{'':34}{'wall s':>8}{'CPU s':>8}{'requests':>10}{'wall/bare':>11}{'CPU/bare':>10}")
        labels = {
            "bare": "bare scan (catalog+tags+HEAD)",
            "cold": "regkeeper cold, storage config'd",
            "warm": "regkeeper warm, storage config'd",
        }
        for k in ("bare", "cold", "warm"):
            w, c, r = med[k]
            print(f"{labels[k]:34}{w:>8.2f}{c:>8.2f}{r:>10.0f}{w / bw:>10.2f}x{c / bc:>9.2f}x")
        print(f"warm scan manifest/blob GETs (registry access log): {warm_gets}")
        print(f"digest cache: {files[0]} manifest files, {files[1]} sidecar files")
        if peak:
            print(f"peak requests in flight on one client: {peak} (concurrency {a.workers})")
        ok = med["cold"][0] / bw <= 1.3 and med["warm"][0] / bw <= 1.3
        print(f"goal <= 1.3x the bare scan, warm and cold: {'met' if ok else 'NOT met'}")
    finally:
        reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
