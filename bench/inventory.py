"""Inventory scan benchmark: regkeeper's scan vs a bare concurrent scan, same registry, same run.

    python bench/inventory.py [--repos 40] [--tags 6] [--workers 8] [--rounds 3]

Bare scan = catalog + tags/list per repository + HEAD per tag (the least any tool must do).
regkeeper cold = empty digest cache (GET per tag + configs when no push time is known);
regkeeper warm = the second run (HEAD per tag, every known digest from the disk cache).
Also counts manifest/blob GETs of the warm scan from the registry's access log (goal: 0).
Ratios are medians of --rounds runs; the machine is shared, so absolute times are noisy.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
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


def bare_scan(url: str, workers: int) -> int:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=workers + 4))
    repos, nxt = [], f"{url}/v2/_catalog?n=1000"
    while nxt:
        r = s.get(nxt, timeout=30, verify=False)
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
    return len(pairs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=40)
    ap.add_argument("--tags", type=int, default=6)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-inv-"))
    reg = RegistryServer(tmp / "reg")
    try:
        t0 = time.perf_counter()
        images.push_many(
            reg.url, n_repos=a.repos, tags_per_repo=a.tags, prefix="bench/app", workers=8, seed=1
        )
        print(
            f"generated {a.repos} repositories x {a.tags} tags = {a.repos * a.tags} tags "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        storage = FilesystemStorage(reg.root)
        res = {"bare": [], "cold": [], "cold+storage": [], "warm": []}
        warm_gets = None
        for rnd in range(a.rounds):
            t = time.perf_counter()
            n = bare_scan(reg.url, a.workers)
            res["bare"].append(time.perf_counter() - t)
            cdir = tmp / f"cache{rnd}"
            c = RegistryClient("bench", reg.url, cache=DigestCache(cdir), concurrency=a.workers)
            t = time.perf_counter()
            inv = scan(c)
            res["cold"].append(time.perf_counter() - t)
            assert inv.tag_count == n
            c2 = RegistryClient(
                "bench", reg.url, cache=DigestCache(tmp / f"cache-s{rnd}"), concurrency=a.workers
            )
            t = time.perf_counter()
            scan(c2, storage=storage)
            res["cold+storage"].append(time.perf_counter() - t)
            reg.clear_access_log()
            c3 = RegistryClient("bench", reg.url, cache=DigestCache(cdir), concurrency=a.workers)
            t = time.perf_counter()
            inv3 = scan(c3)
            res["warm"].append(time.perf_counter() - t)
            log = reg.access_log(min_entries=1)
            warm_gets = len(
                [e for e in log if e.method == "GET" and ("/manifests/" in e.path or "/blobs/" in e.path)]
            )
            assert inv3.tag_count == n
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{n} tags, {a.workers} workers, median of {a.rounds} rounds")
        print(f"  bare concurrent scan (catalog+tags+HEAD): {med['bare']:.3f}s")
        for k in ("cold", "cold+storage", "warm"):
            print(f"  regkeeper {k:<13} {med[k]:.3f}s   ratio vs bare {med[k] / med['bare']:.2f}x")
        print(f"  warm scan manifest/blob GETs (registry access log): {warm_gets}")
    finally:
        reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
