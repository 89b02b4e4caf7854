"""Benchmark: what referrers cost replication, in requests per tag, cold and warm.

One source registry holds two sets of repositories side by side: ``plain/<i>`` (N x M images,
no referrers: the baseline) and ``signed/<i>`` (the same images, each with K referrers: OCI 1.1
artifacts with a ``subject``; on a registry without the referrers API also listed in the
``sha256-<hex>`` fallback index tag, as oras and cosign do there). Each set is replicated by its
own rule to a fresh target (``replicate_target``, verify on, as the flow), cold then warm; the
requests each run sends are counted by the clients (source and target apart) and divided by the
source tags of the set (referrer tags included in the count of tags). Pairs: every combination
of distribution 2.8 (no API) and the referrers-API registry (tests/go/referrers-registry; a
pair is skipped when that binary is missing).

Then the backup of each source kind, both sets apart (``regkeeper.backup.backup`` to a fresh
directory, first and second run): registry requests per source tag, with and without referrers.

    python bench/replicate_referrers.py [--repos 5] [--tags 10] [--referrers 2]
"""

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from regkeeper.config import ReplicationRule  # noqa: E402
from regkeeper.oci import RegistryClient  # noqa: E402
from regkeeper.replicate import replicate_target  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.gotools import go_tool_path  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

KINDS = ("dist28", "referrers-api")


def start(kind: str, root: Path):
    if kind == "dist28":
        return RegistryServer(root)
    from tests.support.referrers import ReferrersRegistryServer

    return ReferrersRegistryServer(root)


def fill(url: str, api: bool, n_repos: int, n_tags: int, k: int) -> dict[str, int]:
    """The two sets; returns source tags per set."""
    for i in range(n_repos):
        for t in range(n_tags):
            seed = f"{i}-{t}"
            for kind in ("plain", "signed"):
                img = images.push_image(url, f"{kind}/r{i}", f"v{t}", media="oci", seed=seed + kind)
                if kind == "signed":
                    for j in range(k):
                        images.push_referrer(
                            url,
                            f"signed/r{i}",
                            img.descriptor,
                            artifact_type=f"application/vnd.example.r{j}+json",
                            fallback_tag=not api,
                        )
    return {
        kind: sum(len(images.list_tags(url, f"{kind}/r{i}")) for i in range(n_repos))
        for kind in ("plain", "signed")
    }


def run(src_url: str, dst_url: str, kind: str) -> dict:
    src = RegistryClient("primary", src_url, verify=False)
    dst = RegistryClient("replica", dst_url, verify=False)
    rule = ReplicationRule.model_validate({"from": "primary", "to": ["replica"], "include": [f"{kind}/**"]})
    res = replicate_target(src, dst, rule, "replica", verify=True)
    assert res.status == "ok", res.failed_items
    t = res.totals()
    return {
        "source": sum(v for k_, v in Counter(src.stats).items() if k_ != "retries"),
        "target": sum(v for k_, v in Counter(dst.stats).items() if k_ != "retries"),
        "copied": t["copied"],
        "referrers": t["referrers_copied"],
    }


def backup_requests(tmp: Path, kind: str, n_repos: int, n_tags: int, k: int) -> None:
    from regkeeper.backup import FileStore, backup
    from regkeeper.cache import DigestCache

    src = start(kind, tmp / f"backup-{kind}")
    try:
        tags = fill(src.url, kind == "referrers-api", n_repos, n_tags, k)
        print(f"\nbackup of {kind}: requests per source tag (first run, second run)")
        per = {}
        for group in ("plain", "signed"):
            store = FileStore(tmp / f"store-{kind}-{group}")
            runs = []
            for _ in range(2):
                cache = DigestCache(tmp / f"cache-{kind}-{group}")  # as the flow's (cacheDir)
                client = RegistryClient("reg", src.url, verify=False, cache=cache)
                res = backup(client, store, include=[f"{group}/**"])
                runs.append(sum(v for k_, v in res.requests.items() if k_ != "retries") / tags[group])
            per[group] = runs
            refs = res.snapshot.counts.get("referrers", 0)
            print(f"  {group:7} {runs[0]:6.2f} {runs[1]:6.2f}   referrers recorded {refs}")
        print(f"  second run: signed/plain = {per['signed'][1] / per['plain'][1]:.2f}x")
    finally:
        src.stop()


def one_pair(tmp: Path, a: str, b: str, n_repos: int, n_tags: int, k: int) -> None:
    src, dsts = start(a, tmp / f"src-{a}-{b}"), []
    try:
        tags = fill(src.url, a == "referrers-api", n_repos, n_tags, k)
        print(
            f"\n{a} -> {b}: plain {tags['plain']} tags, signed {tags['signed']} tags "
            f"({n_repos * n_tags} images x {k} referrers)"
        )
        print(
            f"  {'set':7} {'run':5} {'src/tag':>8} {'dst/tag':>8} {'total/tag':>10} {'copied':>7} {'referrers':>9}"
        )
        per: dict[tuple[str, str], float] = {}
        for kind in ("plain", "signed"):
            dst = start(b, tmp / f"dst-{a}-{b}-{kind}")
            dsts.append(dst)
            for phase in ("cold", "warm"):
                r = run(src.url, dst.url, kind)
                n = tags[kind]
                per[(kind, phase)] = (r["source"] + r["target"]) / n
                print(
                    f"  {kind:7} {phase:5} {r['source'] / n:8.2f} {r['target'] / n:8.2f} "
                    f"{per[(kind, phase)]:10.2f} {r['copied']:7} {r['referrers']:9}"
                )
        for phase in ("cold", "warm"):
            print(
                f"  {phase}: signed/plain requests per tag = {per[('signed', phase)] / per[('plain', phase)]:.2f}x"
            )
    finally:
        for reg in [src, *dsts]:
            reg.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repos", type=int, default=5)
    ap.add_argument("--tags", type=int, default=10, help="images per repository")
    ap.add_argument("--referrers", type=int, default=2, help="referrers per image in the signed set")
    args = ap.parse_args(argv)
    have_api = go_tool_path("referrers-registry") is not None
    with tempfile.TemporaryDirectory(prefix="bench-referrers-") as d:
        for a in KINDS:
            for b in KINDS:
                if "referrers-api" in (a, b) and not have_api:
                    print(f"\n{a} -> {b}: skipped (referrers-registry not built: scripts/install-go-tools)")
                    continue
                one_pair(Path(d), a, b, args.repos, args.tags, args.referrers)
        for kind in KINDS:
            if kind == "dist28" or have_api:
                backup_requests(Path(d), kind, args.repos, args.tags, args.referrers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
