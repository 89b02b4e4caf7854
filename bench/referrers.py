"""What referrers discovery costs the inventory scan: requests on a 1k-tag registry with and
without the referrers API, side by side in one run.

    python bench/referrers.py [--repos 20] [--tags 50] [--every 5] [--workers 8]

The same content is pushed to distribution 2.8 (no API: referrers are kept in the sha256-<hex>
fallback index, read from the tags list) and to the go-containerregistry registry with the API
(tests/go/referrers-registry; referrers untagged, found only through the API): ``--repos`` x
``--tags`` OCI images, an SBOM referrer on every ``--every``-th image. Each registry is scanned
cold (empty digest cache) and warm (the same cache again), with a fresh client each time (the
mode is detected per client). Baseline: the API registry scanned with discovery off (the
client told the registry has no API), i.e. what the scan cost before issue 12. Prints
requests (total, referrers API), referrers linked, CPU seconds of this process, and the ratios
of requests against the baseline of the same cache state.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regkeeper.cache import DigestCache  # noqa: E402
from regkeeper.inventory import scan  # noqa: E402
from regkeeper.oci import RegistryClient  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.referrers import ReferrersRegistryServer  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


def fill(url: str, repos: int, tags: int, every: int, fallback: bool) -> int:
    pushed = images.push_many(url, repos, tags, media="oci", seed="bench-referrers", prefix="bench/ref")
    n = 0
    for i, img in enumerate(pushed):
        if i % every == 0:
            images.push_referrer(url, img.repo, img, fallback_tag=fallback)
            n += 1
    return n


def one_scan(url: str, cache: Path, discovery: bool) -> dict:
    client = RegistryClient("bench", url, cache=DigestCache(cache))
    if not discovery:
        client._referrers_mode = "tag-schema"  # as before issue 12: never ask the API
    c0 = time.process_time()
    inv = scan(client)
    cpu = time.process_time() - c0
    st = inv.stats
    return {
        "tags": st["tags"],
        "requests": sum(v for k, v in client.stats.items() if k.isupper() and k != "TOKEN"),
        "referrer_requests": st["referrer_requests"],
        "referrers": st["referrers"],
        "mode": client.referrers_mode,
        "cpu": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=20)
    ap.add_argument("--tags", type=int, default=50)
    ap.add_argument("--every", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-referrers-"))
    dist = RegistryServer(tmp / "dist28")
    api = ReferrersRegistryServer(tmp / "api")
    try:
        t0 = time.perf_counter()
        n_dist = fill(dist.url, args.repos, args.tags, args.every, fallback=True)
        n_api = fill(api.url, args.repos, args.tags, args.every, fallback=False)
        print(
            f"pushed {args.repos * args.tags} images + {n_dist} / {n_api} SBOMs in {time.perf_counter() - t0:.0f}s"
        )
        runs = [
            ("referrers API, discovery off (baseline)", api.url, False),
            ("referrers API (mode api)", api.url, True),
            ("distribution 2.8 (mode tag-schema)", dist.url, True),
        ]
        for state in ("cold", "warm"):
            results = {}
            for label, url, discovery in runs:
                # the warm scan reuses the cold scan's digest cache (same directory)
                results[label] = one_scan(url, tmp / f"cache-{label[:12]}-{discovery}", discovery)
            base = results[runs[0][0]]["requests"]
            print(f"\n{state} scan ({base} requests in the baseline)")
            for label, r in results.items():
                print(
                    f"  {label:42s} tags {r['tags']:5d}  requests {r['requests']:5d} "
                    f"(referrers API {r['referrer_requests']:5d})  ratio {r['requests'] / base:.2f}  "
                    f"referrers linked {r['referrers']:4d}  mode {r['mode']}  cpu {r['cpu']:.2f}s"
                )
    finally:
        api.stop()
        dist.stop()


if __name__ == "__main__":
    main()
