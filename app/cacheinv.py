"""``regkeeper inventory`` on a proxy (pull-through) registry: what the cache holds, from its
storage (its API's tag lists are the upstream's), and its capacity."""

import csv
import json
import sys
from typing import Any

from regkeeper.capacity import storage_usage
from regkeeper.context import RunContext
from regkeeper.proxycache import read_cache
from regkeeper.pulls.history import iso
from regkeeper.util import human_bytes

COLUMNS = ["repository", "tags", "digest", "kind", "cached", "bytes"]


def print_cache(ctx: RunContext, name: str, fmt: str, include=None, exclude=None) -> int:
    storage = ctx.storage(name)
    inv = read_cache(storage, include, exclude)
    rows: list[dict[str, Any]] = [
        {
            "repository": i.repository,
            "tags": " ".join(i.tags),
            "digest": i.digest,
            "kind": i.kind,
            "cached": iso(i.cached),
            "bytes": inv.image_bytes(i),
        }
        for i in inv.images
    ]
    usage = storage_usage(storage)
    used = usage.bytes_used if usage is not None else None
    cap = ctx.config.registry(name).capacity_bytes
    if fmt == "json":
        doc = {"registry": name, "storage": inv.root, "storage_bytes": used, "capacity_bytes": cap}
        print(json.dumps(doc | {"repositories": inv.per_repository(), "images": rows}, indent=2))
    elif fmt == "csv":
        w = csv.DictWriter(sys.stdout, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    else:
        for r in rows:
            print(
                f"{r['repository']:<40} {r['tags'] or '-':<24} {r['digest'][:19]}  {r['cached']}  {r['bytes']:>12}"
            )
    ratio = f" of {human_bytes(cap)} ({used / cap:.1%})" if cap and used is not None else ""
    print(
        f"{name} (pull-through cache, from {inv.root}): {len(inv.repositories)} repositories, "
        f"{len(inv.images)} images, {human_bytes(inv.blob_bytes)} in blobs; storage "
        f"{human_bytes(used)}{ratio}",
        file=sys.stderr,
    )
    return 0
