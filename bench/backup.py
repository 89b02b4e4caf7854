"""Backup benchmark: time and objects written by the first and the second backup of a generated
registry (default 24 repositories x 9 tags + 4 multi-arch indexes = 220 tags), to an S3 target
(a real moto_server) and to a directory, and the ratio second/first.

    python bench/backup.py [--repos 24] [--tags 9] [--indexes 4] [--new 10] [--target s3,file]

Run 1: empty target, empty digest cache (a first backup: GET every manifest, GET every config).
Between runs, --new tags are pushed (new images: new manifests and configs).
Run 2: the nightly case: same cache directory, a new client; only the new objects are written.
Run 3: nothing changed: no object written, only the index.
"target PUTs" are counted by the server (moto's request log) for S3 and as new files for the
directory. This measures the core (regkeeper.backup) without Prefect; a CLI/flow run adds
Prefect's fixed start-up cost on top (see DESIGN.md).
"""

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regkeeper import backup as B  # noqa: E402
from regkeeper.cache import DigestCache  # noqa: E402
from regkeeper.config import BackupConfig  # noqa: E402
from regkeeper.oci import RegistryClient  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.moto import MotoServer  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

V = {"verify": False}
CREATED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def generate(reg: RegistryServer, repos: int, tags: int, indexes: int) -> int:
    images.push_many(
        reg.url,
        repos,
        tags,
        shared_base_layer=True,
        prefix="bench/app",
        seed="bench",
        created_start=CREATED,
        workers=8,
        **V,
    )
    for i in range(indexes):
        images.push_index(reg.url, f"bench/multi-{i}", "latest", seed=f"idx{i}", created=CREATED, **V)
    return repos * tags + indexes


def push_new(reg: RegistryServer, n: int, round_: int) -> None:
    for i in range(n):
        images.push_image(
            reg.url,
            f"bench/app-{i % 4:04d}",
            f"new-{round_}-{i}",
            seed=f"new{round_}/{i}",
            created=CREATED,
            **V,
        )


def count_files(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


def one_target(
    kind: str, reg: RegistryServer, moto: MotoServer | None, work: Path, new: int, round_base: int
) -> list[dict]:
    cache = work / f"cache-{kind}"
    shutil.rmtree(cache, ignore_errors=True)
    if kind == "s3":
        bucket = moto.create_bucket(f"bench-{os.getpid()}-{round_base}")
        cfg = BackupConfig.model_validate(
            {
                "target": f"s3://{bucket}/meta",
                "endpoint": moto.endpoint,
                "accessKey": moto.access_key,
                "secretKey": moto.secret_key,
            }
        )
    else:
        root = work / "target-file"
        shutil.rmtree(root, ignore_errors=True)
        cfg = BackupConfig.model_validate({"target": f"file://{root}"})
    rows = []
    for run in (1, 2, 3):
        if run == 2:
            push_new(reg, new, round_base)
        client = RegistryClient("bench", reg.url, verify=False, cache=DigestCache(cache))
        store = B.open_target(cfg.target, cfg)
        if kind == "s3":
            moto.clear_request_log()
        else:
            before = count_files(root)
        t0 = time.perf_counter()
        res = B.backup(client, store, keep=14)
        secs = time.perf_counter() - t0
        if kind == "s3":
            puts = len(moto.object_puts(bucket, "meta/"))
        else:
            after = count_files(root)
            puts = sum(1 for p, t in after.items() if before.get(p) != t)
        rows.append(
            {
                "target": kind,
                "run": run,
                "tags": res.snapshot.counts["tags"],
                "seconds": secs,
                "objects": res.objects_written,
                "bytes": res.bytes_written,
                "target_puts": puts,
                "registry": " ".join(f"{k}={v}" for k, v in sorted(res.requests.items())),
            }
        )
        client.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=24)
    ap.add_argument("--tags", type=int, default=9)
    ap.add_argument("--indexes", type=int, default=4)
    ap.add_argument("--new", type=int, default=10, help="tags pushed between run 1 and run 2")
    ap.add_argument("--target", default="s3,file")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.target.split(",") if k.strip()]
    work = Path(tempfile.mkdtemp(prefix="rk-bench-backup-"))
    reg = moto = None
    try:
        reg = RegistryServer(work / "registry")
        moto = MotoServer(log_dir=str(work / "moto")) if "s3" in kinds else None
        t0 = time.perf_counter()
        n = generate(reg, args.repos, args.tags, args.indexes)
        print(
            f"generated registry: {args.repos} repositories x {args.tags} tags + {args.indexes} "
            f"multi-arch indexes = {n} tags ({time.perf_counter() - t0:.1f}s to push)"
        )
        rows = []
        for i, kind in enumerate(kinds):
            rows += one_target(kind, reg, moto, work, args.new, i)
        print()
        print(
            f"{'target':6} {'run':>3} {'tags':>5} {'seconds':>8} {'objects':>8} {'bytes':>9} "
            f"{'target PUTs':>11}  registry requests"
        )
        for r in rows:
            print(
                f"{r['target']:6} {r['run']:>3} {r['tags']:>5} {r['seconds']:>8.2f} {r['objects']:>8} "
                f"{r['bytes']:>9} {r['target_puts']:>11}  {r['registry']}"
            )
        print()
        for kind in kinds:
            first, second, third = [r for r in rows if r["target"] == kind]
            print(
                f"{kind}: second/first ratio: time {second['seconds'] / first['seconds']:.2f}, "
                f"objects written {second['objects']}/{first['objects']} = "
                f"{second['objects'] / max(first['objects'], 1):.3f}; "
                f"no-change run: {third['objects']} objects, {third['seconds']:.2f}s"
            )
        print("(target PUTs = objects + the snapshot index; on S3 also the in-flight marker)")
    finally:
        if moto:
            moto.stop()
        if reg:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
