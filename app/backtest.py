"""``regkeeper backtest --config F --job gc|expire [--since 90d] [--registry R]``: the rules'
regret over the pull history (``regkeeper/backtest``), without Prefect. Reads only; writes the
report (CSV / HTML / JSON) under the reports directory and prints its headline."""

import json
import sys


def add_parser(sub) -> None:
    bt = sub.add_parser(
        "backtest", help="what the gc or expire rules would delete that was pulled afterwards (reads only)"
    )
    bt.add_argument("--config", help="config file (default $REGKEEPER_CONFIG or ./regkeeper.yaml)")
    bt.add_argument("--job", choices=("gc", "expire"), required=True, help="whose rules")
    bt.add_argument("--since", default="90d", help="the window replayed (default 90d)")
    bt.add_argument("--registry", help="registry name (default: the job's configured registry)")


def backtest_cmd(args) -> int:
    from regkeeper.backtest import build_report
    from regkeeper.backtest.run import backtest
    from regkeeper.config import parse_duration
    from regkeeper.context import load_context
    from regkeeper.errors import ConfigError

    try:
        since = parse_duration(args.since)
    except ValueError as e:
        raise ConfigError(f"--since: {e}") from None
    ctx = load_context(args.config)
    try:
        rep = build_report(backtest(ctx, args.job, args.registry, since)).finish("dry-run")
        paths = rep.write(ctx.reports_dir())
    finally:
        ctx.close()
    for line in rep.headline:
        print(line)
    print(f"report: {paths['html']}")
    print(json.dumps(rep.summary, default=str), file=sys.stderr)
    return 0
