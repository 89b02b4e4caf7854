"""Benchmark: ordered rules and the backtest, side by side with the plain planner.

On the synthetic inventory of ``bench/gc_plan.py`` (10k tags by default):

1. one gc plan with today's keys (``days: 30, keepLast: 5``) vs the equivalent ordered rules
   (``keep: {last: 5, newerThan: 30d}, delete: {olderThan: 30d}`` + an untagged rule): the ratio
   is what ordered rules cost over the keys (and the two plans must delete the same);
2. a backtest over 30 and 90 days vs one plan: the replay plans once per day, so the ratio per
   replayed day says what a day costs relative to one plan (~1 or below: the inventory as of an
   early day is smaller).

CPU seconds (``time.process_time``) are the figure: steadier than wall time on a shared box.

    python bench/backtest.py [--tags 10000] [--repeat 3]
"""

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gc_plan import NOW, synthetic_inventory  # noqa: E402
from regkeeper.backtest import run  # noqa: E402
from regkeeper.config import TierConfig  # noqa: E402
from regkeeper.policy import gc_resolver, plan  # noqa: E402

RULES = [
    {"keep": {"last": 5, "newerThan": "30d"}, "delete": {"olderThan": "30d"}},
    {"tagStatus": "untagged", "delete": {"olderThan": "0s"}},
]


def cpu(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        c0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c0)
    return best, out


def pull_days(inv, seed: int = 3):
    """~20% of the images pulled on random days of the last 120."""
    rnd = random.Random(seed)
    out = {}
    for r in inv.repositories.values():
        for d in set(r.tags.values()):
            if rnd.random() < 0.2:
                days = sorted({(NOW - timedelta(days=rnd.randint(0, 120))).date() for _ in range(5)})
                out[(r.name, d)] = [(day, 1) for day in days]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    inv = synthetic_inventory(args.tags)
    keys = gc_resolver(["**"], [], days=30, keep_last=5, protect=["latest"])
    rules = gc_resolver(
        ["**"],
        [],
        None,
        None,
        ["latest"],
        rules=TierConfig.model_validate({"name": "x", "match": ["**"], "rules": RULES}).rules,
    )
    kw = {"now": NOW, "max_delete_fraction": 1.0}
    base, p_keys = cpu(lambda: plan(inv, keys, **kw), args.repeat)
    ordered, p_rules = cpu(lambda: plan(inv, rules, **kw), args.repeat)
    same = {(t.repository, t.tag, t.action) for t in p_keys.tags} == {
        (t.repository, t.tag, t.action) for t in p_rules.tags
    }
    print(f"{inv.tag_count} tags, {len(inv.repositories)} repositories")
    print(f"plan, today's keys      cpu {base:7.3f} s  deleted {len(p_keys.deleted_tags())}")
    print(
        f"plan, ordered rules     cpu {ordered:7.3f} s  deleted {len(p_rules.deleted_tags())}  same plan: {same}"
    )
    print(f"ratio rules / keys      {ordered / base:.2f}")
    days = pull_days(inv)
    for window in (30, 90):
        secs, bt = cpu(
            lambda w=window: run(
                inv, rules, days, job="gc", now=NOW, since=timedelta(days=w), max_delete_fraction=1.0
            ),
            1,
        )
        print(
            f"backtest {window:>2}d           cpu {secs:7.3f} s  days {bt.days}  regrets "
            f"{len(bt.of_kind('replay'))}  ratio per day / one plan {secs / bt.days / ordered:.2f}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
