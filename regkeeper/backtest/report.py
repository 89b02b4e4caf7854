"""The backtest's report through the one report writer: the headline (how many images the rules
would regret), the figures, the notes (limits, pull-history coverage) and the "regret" table
(one row per image: when the rules delete it, which rule, and the pulls or the Kubernetes
workloads that wanted it afterwards)."""

from ..config import format_duration
from ..report import Report
from .replay import Backtest

REGRET_COLUMNS = [
    "kind",
    "day",
    "repository",
    "tags",
    "rule",
    "pulled_after",
    "pulls_after",
    "in_use",
    "reason",
    "digest",
]


def build_report(bt: Backtest) -> Report:
    rep = Report("backtest", bt.registry, status="dry-run", key=f"backtest-{bt.job}-{bt.registry}")
    now, replay = bt.of_kind("now"), bt.of_kind("replay")
    window = format_duration(bt.since)
    rep.title = f"backtest of the {bt.job} rules over {window}"  # the writer adds " — <registry>"
    rep.lead(
        f"Now: the {bt.job} rules would delete {bt.deleted_now} images; {len(now)} of them were pulled "
        f"in the last {window}."
    )
    rep.lead(
        f"Replayed over {bt.days} days: {bt.deleted_replay} images deleted on some day; {len(replay)} of "
        "them were pulled afterwards or run in Kubernetes now."
    )
    _regret_headline(rep, bt, window)
    rep.lead("Nothing was deleted: a backtest only reads.")
    rep.summary.update(
        {
            "job": bt.job,
            "window": window,
            "days replayed": bt.days,
            "deleted now": bt.deleted_now,
            "regret now (pulled in the window)": len(now),
            "deleted in the replay": bt.deleted_replay,
            "regret in the replay (pulled or run afterwards)": len(replay),
        }
    )
    for n in bt.notes:
        rep.note(n)
    rep.note(
        "Reading the regret table: kind `now` = deleted by today's plan, `pulled_after` is its last "
        f"pull and `pulls_after` its pulls in the last {window}; kind `replay` = deleted on `day`, "
        "`pulled_after` is the first pull after that day and `pulls_after` the pulls since."
    )
    rep.note(
        "The replay sees today's inventory: images already deleted since a day are not in it. Pulls are "
        "counted per UTC day; a pull on the day of the deletion does not count as afterwards."
    )
    rows = [r.row() for r in sorted(bt.regrets, key=lambda r: (r.kind, r.day, r.repository, r.digest))]
    rep.add_table(
        "regret", rows, REGRET_COLUMNS, empty="No regret: no image these rules delete was wanted afterwards."
    )
    return rep


def _regret_headline(rep: Report, bt: Backtest, window: str) -> None:
    """What regret means and what to do about it: per rule, the images it would regret (counted
    once across now and the replay), and the ways to change the rule; or that there is none."""
    if not bt.regrets:
        rep.lead(
            f"No regret over {window}: no image these rules delete was pulled afterwards or is run in "
            "Kubernetes now."
        )
        return
    per_rule: dict[str, set[tuple[str, str]]] = {}
    for r in bt.regrets:
        per_rule.setdefault(r.rule, set()).add((r.repository, r.digest))
    by_rule = ", ".join(f"{rule}: {len(imgs)}" for rule, imgs in sorted(per_rule.items()))
    rep.lead(
        "Regret = an image the rules delete that someone wanted afterwards (pulled it, or runs it in "
        f"Kubernetes): it would have to be pushed again or its pulls would fail. Images regretted by "
        f"rule: {by_rule}."
    )
    rep.lead(
        "To avoid it before the rules go live: keep what is pulled (`pulledWithin: "
        f"{window}` on gc or a tier; `keep: {{pulledWithin: {window}}}` in the ordered rule named), raise "
        "the rule's age (`olderThan`, `days`) or its `keep.last`/`keepLast`, or narrow its `tags`; then "
        "run the backtest again."
    )
