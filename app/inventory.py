"""``regkeeper inventory``: scan a registry and print its tags (table, CSV or JSON), or for a
proxy (pull-through) registry what the cache holds, from its storage (its API's tag lists are
the upstream's), and its capacity."""

import csv
import json
import sys
from typing import Any

from regkeeper.capacity import storage_usage
from regkeeper.context import RunContext
from regkeeper.proxycache import read_cache
from regkeeper.pulls.history import iso
from regkeeper.util import human_bytes


def inventory_cmd(args) -> int:
    """``regkeeper inventory``: a registry's tags (a proxy: what the cache holds)."""
    from regkeeper.context import load_context
    from regkeeper.inventory import scan

    ctx = load_context(args.config)
    name = ctx.registry_name(args.registry)
    if ctx.config.registry(name).type == "proxy":  # what the cache holds: from its storage
        return print_cache(ctx, name, args.format, args.include, args.exclude)
    inv = scan(ctx.client(name), include=args.include, exclude=args.exclude, storage=ctx.storage(name))
    if args.format == "csv":
        sys.stdout.write(inv.to_csv())
    elif args.format == "json":
        print(inv.to_json())
    else:
        df = inv.to_dataframe()
        if df.empty:
            print(f"{name}: no tags")
        else:
            import pandas as pd

            with pd.option_context(
                "display.max_rows", None, "display.width", 200, "display.max_colwidth", 40
            ):
                show = df.drop(columns=["media_type", "signature_of"]).copy()
                show["digest"] = show["digest"].str.slice(0, 19)
                show["subject"] = show["subject"].str.slice(0, 19)  # referrer -> its subject
                print(show.to_string(index=False))
    st = inv.stats
    print(
        f"{name}: {st['repositories']} repositories, {st['tags']} tags in {st['seconds']}s "
        f"(requests {st['requests']}, cache hits {st['cache_hits']}); referrers: "
        f"{st.get('referrers_mode', 'unknown')}, {st.get('referrers', 0)} linked to their subjects",
        file=sys.stderr,
    )
    for repo, r in inv.repositories.items():
        for e in r.errors:
            print(f"warning: {repo}: {e}", file=sys.stderr)
    from app.quarantine import print_apart

    return print_apart(ctx, name)


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
