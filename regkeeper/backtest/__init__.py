"""The backtest: what a job's rules would delete that was pulled (or run) afterwards.

- ``replay``: pure, the two questions (now / replayed per day) through the one planner.
- ``run``: the reads (inventory, Kubernetes, rules, pull store) of a backtest run.
- ``report``: the "regret" report through the one report writer.
"""

from .replay import Backtest, Regret, inventory_as_of, run
from .report import build_report

__all__ = ["Backtest", "Regret", "build_report", "inventory_as_of", "run"]
