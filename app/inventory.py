"""``regkeeper inventory``: scan a registry and print its tags (table, CSV or JSON), or for a
proxy (pull-through) registry what the cache holds (``app/cacheinv.py``)."""

import sys


def inventory_cmd(args) -> int:
    """``regkeeper inventory``: a registry's tags (a proxy: what the cache holds)."""
    from regkeeper.context import load_context
    from regkeeper.inventory import scan

    ctx = load_context(args.config)
    name = ctx.registry_name(args.registry)
    if ctx.config.registry(name).type == "proxy":  # what the cache holds: from its storage
        from app.cacheinv import print_cache

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
