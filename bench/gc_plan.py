"""Benchmark: policy planning time vs inventory size (10k / 20k / 40k tags).

Generates a synthetic registry inventory (50 tags per repository: images with shared base
layers, multi-arch indexes with untagged children, cosign signatures, aliases on one digest,
untagged orphans, push times spread over 120 days), plans it with the gc rules and with the
tier rules (Kubernetes protection on), and prints the planning time per size and the ratio
time(2N)/time(N): ~2.0 means linear.

    python bench/gc_plan.py [--sizes 10000,20000,40000] [--repeat 3]
"""

import argparse
import gc
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regkeeper.models import (  # noqa: E402
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Inventory,
    ManifestInfo,
    RepoInventory,
)
from regkeeper.policy import gc_resolver, plan, tier_resolver  # noqa: E402

NOW = datetime(2024, 6, 1, tzinfo=UTC)
TAGS_PER_REPO = 50
CFG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class _Digests:
    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"sha256:{self.n:064x}"


def synthetic_inventory(n_tags: int, seed: int = 1) -> Inventory:
    rnd = random.Random(seed)
    new = _Digests()
    base_layers = [Descriptor(LAYER, new(), rnd.randint(5, 80) * 1_000_000) for _ in range(30)]
    n_repos = max(1, n_tags // TAGS_PER_REPO)
    prefixes = ["library", "team-a", "team-b", "team-c", "ci", "tmp"]
    inv = Inventory(registry="bench", scanned_at=NOW, push_time_source="filesystem")

    def img(created: datetime, subject: str | None = None) -> ManifestInfo:
        blobs = [Descriptor(CFG, new(), 1500)]
        blobs += rnd.sample(base_layers, 2)
        blobs += [Descriptor(LAYER, new(), rnd.randint(1, 50) * 100_000) for _ in range(rnd.randint(1, 3))]
        return ManifestInfo(
            digest=new(),
            media_type=DOCKER_MANIFEST,
            kind="image",
            size=1200,
            config_digest=blobs[0].digest,
            blobs=blobs,
            subject=subject,
            created=created,
            created_source="config",
        )

    for ri in range(n_repos):
        r = RepoInventory(name=f"{prefixes[ri % len(prefixes)]}/svc-{ri}")
        tags = 0
        i = 0
        while tags < TAGS_PER_REPO:
            age = timedelta(days=rnd.uniform(0, 120))
            when = NOW - age
            kind = i % 10
            if kind == 0:  # multi-arch index, children untagged
                kids = [img(when), img(when)]
                for k in kids:
                    r.manifests[k.digest] = k
                m = ManifestInfo(
                    digest=new(),
                    media_type=OCI_INDEX,
                    kind="index",
                    size=700,
                    children=[
                        Descriptor(OCI_MANIFEST, k.digest, k.size, platform=p)
                        for k, p in zip(kids, ("linux/amd64", "linux/arm64"), strict=True)
                    ],
                    created=when,
                    created_source="config",
                )
            else:
                m = img(when)
            r.manifests[m.digest] = m
            tag = "latest" if i == 0 else (f"v1.{i}" if kind == 3 else f"build-{i}")
            r.tags[tag] = m.digest
            r.push_times[tag] = when
            tags += 1
            if kind == 5 and tags < TAGS_PER_REPO:  # alias on the same digest
                r.tags[f"{tag}-alias"] = m.digest
                r.push_times[f"{tag}-alias"] = when + timedelta(minutes=1)
                tags += 1
            if i % 4 == 1 and tags < TAGS_PER_REPO:  # cosign signature
                s = img(when)
                r.manifests[s.digest] = s
                t = f"sha256-{m.digest.split(':', 1)[1]}.sig"
                r.tags[t] = s.digest
                r.push_times[t] = when
                tags += 1
            if i % 7 == 2:  # untagged orphan + an SBOM referrer
                o = img(when)
                ref = img(when, subject=m.digest)
                r.manifests[o.digest] = o
                r.manifests[ref.digest] = ref
                r.untagged += [o.digest, ref.digest]
            i += 1
        inv.repositories[r.name] = r
    return inv


class SetInUse:
    """~1% of tags in use, looked up in a set (what regkeeper.kube hands the planner)."""

    def __init__(self, inv: Inventory, fraction: float = 0.01, seed: int = 2):
        rnd = random.Random(seed)
        self.tags = {
            (r.name, t) for r in inv.repositories.values() for t in r.tags if rnd.random() < fraction
        }
        self.calls = 0

    def is_protected(self, repo, tag, digest):
        self.calls += 1
        return ["prod/Deployment/x"] if (repo, tag) in self.tags else []


TIERS = [
    {"name": "base", "match": ["library/**"], "keep": "forever"},
    {"name": "business", "match": ["team-*/**"], "keepLast": 10, "keepDays": 30},
    {"name": "temp", "match": ["tmp/**", "ci/**"], "ttl": "72h", "deleteRepository": True},
]


def time_plan(inv, resolver, repeat: int) -> tuple[float, float, object, int]:
    """Best wall and best CPU seconds over `repeat` runs (CPU time is steadier on a busy box)."""
    best, best_cpu, p, calls = float("inf"), float("inf"), None, 0
    for _ in range(repeat):
        kube = SetInUse(inv)
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        p = plan(inv, resolver, in_use=kube, now=NOW, max_delete_fraction=1.0)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        calls = kube.calls
    return best, best_cpu, p, calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,20000,40000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    gc = gc_resolver(["**"], [], days=30, keep_last=5, protect=["latest", "v*"])
    tiers = tier_resolver(TIERS)

    print(
        f"{'rules':<6} {'tags':>7} {'repos':>6} {'manifests':>9} {'wall s':>7} {'cpu s':>7} "
        f"{'tags/s':>8} {'deleted':>8} {'kube calls':>10} {'freed GB':>9} {'ratio wall':>10} {'ratio cpu':>9}"
    )
    ok = True
    inventories = {n: synthetic_inventory(n) for n in sizes}
    for label, resolver in (("gc", gc), ("tiers", tiers)):
        prev = None
        for n in sizes:
            inv = inventories[n]
            secs, cpu, p, calls = time_plan(inv, resolver, args.repeat)
            manifests = sum(len(r.manifests) for r in inv.repositories.values())
            rw = f"{secs / prev[0]:.2f}" if prev else "-"
            rc = f"{cpu / prev[1]:.2f}" if prev else "-"
            print(
                f"{label:<6} {inv.tag_count:>7} {len(inv.repositories):>6} {manifests:>9} {secs:>7.3f} "
                f"{cpu:>7.3f} {inv.tag_count / secs:>8.0f} {len(p.deleted_tags()):>8} {calls:>10} "
                f"{p.bytes_freed / 1e9:>9.1f} {rw:>10} {rc:>9}"
            )
            if inv.tag_count <= 10_000 and secs >= 1.0:
                ok = False
            prev = (secs, cpu)
    print(
        "ratio = plan time(2N) / plan time(N); ~2.0 is linear. target: 10k tags < 1 s "
        f"({'met' if ok else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
