"""The CLI side of the quarantine: ``regkeeper undo --run RUN_ID [--repositories GLOB] [--tags
GLOB] [--apply]`` (runs the ``undo`` flow, like ``regkeeper run``) and ``regkeeper quarantine
list [--registry R]`` (reads the registry only, no Prefect)."""

import sys

from regkeeper.errors import ConfigError


def add_quarantine_parsers(sub) -> None:
    und = sub.add_parser(
        "undo", help="put a run's deletes back from the quarantine (a dry run unless --apply)"
    )
    und.add_argument("--run", required=True, help="the run id (see `regkeeper quarantine list`)")
    und.add_argument("--config", help="config file")
    und.add_argument("--registry", help="registry name (default: the first)")
    und.add_argument("--repositories", help="only original repositories matching this glob")
    und.add_argument("--tags", help="only tags matching this glob (children and referrers follow)")
    und.add_argument("--apply", action="store_true", help="actually restore (a dry run by default)")
    qua = sub.add_parser("quarantine", help="what the quarantine holds, per run")
    qua.add_argument("action", choices=("list",))
    qua.add_argument("--config", help="config file")
    qua.add_argument("--registry", help="registry name (default: the first)")


def undo_precheck(args) -> str | None:
    """Before the undo flow starts (and Prefect with it): does the quarantine hold anything of
    the run? One read through the listing code; the reason it cannot be undone, in one line
    naming the run, the registry and the list command, or None. No quarantine section: a
    ConfigError."""
    from regkeeper.context import load_context
    from regkeeper.quarantine.listing import read_records
    from regkeeper.quarantine.undo import nothing_held

    ctx = load_context(args.config)
    try:
        qc = ctx.config.quarantine
        if qc is None:
            raise ConfigError(
                f"{ctx.config.source or 'config'}: quarantine: no such section: nothing is held to undo"
            )
        name = ctx.registry_name(args.registry)
        if read_records(ctx.client(name), qc.namespace, run=args.run, repositories=args.repositories):
            return None
    finally:
        ctx.close()
    listing = "regkeeper quarantine list" + "".join(
        f" --{k} {v}" for k, v in (("config", args.config), ("registry", args.registry)) if v
    )
    return nothing_held(name, qc.namespace, args.run, args.repositories, listing)


def as_undo_run(args):
    """``regkeeper undo`` as ``regkeeper run undo``: the flow's dry run unless --apply."""
    args.flow, args.dry_run, args.force = "undo", not args.apply, False
    return args


def print_apart(ctx, name: str) -> int:
    """``regkeeper inventory``: the quarantine namespace is not listed among the repositories,
    but said apart (what it holds, per run: ``regkeeper quarantine list``). Returns 0."""
    from regkeeper.quarantine.listing import held
    from regkeeper.util import human_bytes

    qc = ctx.config.quarantine
    if qc is not None:
        h = held(ctx.client(name), qc.namespace)
        print(
            f"{name}: quarantine {qc.namespace}/ kept apart: {h.runs} run(s), {h.records} record(s), "
            f"{human_bytes(h.bytes)} held (see `regkeeper quarantine list`)",
            file=sys.stderr,
        )
    return 0


def quarantine_list(args) -> int:
    from regkeeper.context import load_context
    from regkeeper.quarantine.listing import read_records, run_rows
    from regkeeper.quarantine.report import list_lines

    ctx = load_context(args.config)
    qc = ctx.config.quarantine
    if qc is None:
        raise ConfigError(f"{ctx.config.source or 'config'}: quarantine: no such section: nothing is held")
    name = ctx.registry_name(args.registry)
    try:
        rows = run_rows(read_records(ctx.client(name), qc.namespace), qc.window)
    finally:
        ctx.close()
    print("\n".join(list_lines(name, rows)))
    return 0
