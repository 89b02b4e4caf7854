"""Capacity's filesystem walk against `du`, side by side on the same tree: regkeeper measures file
bytes AND allocated bytes in one walk (every file, directory and symlink stat'ed once), `du -sb`
gives apparent bytes, `du -s -B1` allocated bytes. Prints each figure, the time (best of N) and
the ratio to du, and how far file bytes fall short of allocated bytes on a registry-shaped tree.

    python bench/capacity_walk.py [--blobs 3000] [--repos 60] [--tags 10] [--rounds 3]

The tree has distribution's layout: blobs/sha256/<2>/<64>/data (small manifests and configs,
some larger layers), and per repository _manifests/tags/<tag>/current/link and index links.
The page cache is warm after the first round (as it is every 5 minutes in production).
"""

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regkeeper.capacity import filesystem_usage  # noqa: E402
from regkeeper.util import human_bytes  # noqa: E402


def make_tree(root: Path, blobs: int, repos: int, tags: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    v2 = root / "docker/registry/v2"
    digests = []
    for i in range(blobs):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        d = v2 / "blobs/sha256" / h[:2] / h
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([300, 900, 1500, 2500, 7000]) if i % 10 else rng.randint(50_000, 2_000_000)
        (d / "data").write_bytes(b"\0" * size)
        digests.append(h)
    for r in range(repos):
        base = v2 / "repositories" / f"team-{r % 7}/app-{r}"
        for t in range(tags):
            h = rng.choice(digests)
            link = base / "_manifests/tags" / f"v{t}" / "current"
            link.mkdir(parents=True, exist_ok=True)
            (link / "link").write_text(f"sha256:{h}")
            idx = base / "_manifests/tags" / f"v{t}" / "index/sha256" / h
            idx.mkdir(parents=True, exist_ok=True)
            (idx / "link").write_text(f"sha256:{h}")
            rev = base / "_manifests/revisions/sha256" / h
            rev.mkdir(parents=True, exist_ok=True)
            (rev / "link").write_text(f"sha256:{h}")


def du(root: Path, *flags: str) -> int:
    return int(
        subprocess.run(
            ["du", "-s", *flags, str(root)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )


def best(fn, rounds: int):
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blobs", type=int, default=3000)
    ap.add_argument("--repos", type=int, default=60)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rk-walk-") as tmp:
        root = Path(tmp)
        make_tree(root, a.blobs, a.repos, a.tags)
        entries = sum(len(d) + len(f) for _, d, f in os.walk(root))
        t_rk, u = best(lambda: filesystem_usage(root), a.rounds)
        t_sb, sb = best(lambda: du(root, "-b"), a.rounds)
        t_b1, b1 = best(lambda: du(root, "-B1"), a.rounds)
        print(f"tree: {entries} entries ({u.files} files)")
        print(
            f"regkeeper walk   {t_rk * 1000:8.1f} ms  file bytes {u.bytes_used} ({human_bytes(u.bytes_used)}), "
            f"allocated bytes {u.allocated_bytes} ({human_bytes(u.allocated_bytes)})"
        )
        print(f"du -sb           {t_sb * 1000:8.1f} ms  {sb} ({human_bytes(sb)})")
        print(f"du -s -B1        {t_b1 * 1000:8.1f} ms  {b1} ({human_bytes(b1)})")
        print(f"allocated bytes == du -s -B1: {u.allocated_bytes == b1}")
        print(f"time ratio regkeeper / du -s -B1: {t_rk / t_b1:.2f}   (one walk gives both figures)")
        print(
            f"file bytes are {100 * (1 - u.bytes_used / sb):.0f}% under du -sb and "
            f"{100 * (1 - u.bytes_used / b1):.0f}% under allocated bytes (what df counts)"
        )


if __name__ == "__main__":
    main()
