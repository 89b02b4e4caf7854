"""The backtest (issue 13 part 4): what a job's configured rules would have deleted that was
wanted afterwards, the rule's "regret" before it goes live. Pure: the inventory, the resolver
(``prune.pipeline.job_rules``, the same rules a run reads), the per-day pull history
(``PullStore.pull_days``) and the Kubernetes in-use view are given; it plans through the one
planner (``policy.plan``) and never deletes anything.

Two questions:

- **now**: which images would the rules delete today that were pulled within the last
  ``since`` (e.g. 90 days)? Planned with today's pull history, like a real run.
- **replay**: for each UTC day D of the window, the rules are evaluated as of the end of D: the
  inventory as it stood then (tags and untagged manifests pushed after D left out), the pull
  history known up to D (last pull per image, collection start and gaps as recorded). An image
  the plan of day D deletes (the first such day counts: it would be gone after it) is a regret
  when it was pulled on a later day, or when Kubernetes runs it now.

Limits, said in the report: images deleted from the registry since D are not in today's
inventory (the replay cannot see them); pull times are per day (a pull on the day of the
deletion is not counted as "afterwards").
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

from ..models import Inventory, RepoInventory
from ..policy import DELETE, InUse, Resolver, plan
from ..pulls.history import PullHistory

PullDays = Mapping[tuple[str, str], list[tuple[date, int]]]  # (repo, digest) -> [(day, pulls)]


@dataclass
class Regret:
    kind: str  # now | replay
    day: date  # the day the rules delete it (today for "now")
    repository: str
    digest: str
    tags: tuple[str, ...]
    rule: str
    reason: str
    pulled_after: date | None  # the first pull after the day (replay) / last pull in window (now)
    pulls_after: int  # pulls after the day (replay) / within the window (now)
    in_use: tuple[str, ...] = ()  # Kubernetes sources running it now

    def row(self) -> dict:
        return {
            "kind": self.kind,
            "day": self.day.isoformat(),
            "repository": self.repository,
            "tags": ",".join(self.tags),
            "rule": self.rule,
            "reason": self.reason,
            "pulled_after": self.pulled_after.isoformat() if self.pulled_after else "",
            "pulls_after": self.pulls_after,
            "in_use": "; ".join(self.in_use),
            "digest": self.digest,
        }


@dataclass
class Backtest:
    registry: str
    job: str
    now: datetime
    since: timedelta
    regrets: list[Regret] = field(default_factory=list)
    days: int = 0  # days replayed
    deleted_now: int = 0  # manifests the rules would delete today
    deleted_replay: int = 0  # distinct manifests the replay deletes on some day
    notes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Regret]:
        return [r for r in self.regrets if r.kind == kind]


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), UTC)


def inventory_as_of(inv: Inventory, at: datetime) -> Inventory:
    """The inventory as it stood at ``at``: tags and untagged manifests pushed later left out,
    with the manifests only they reach (a tag of unknown push time stays: it cannot be dated)."""
    repos: dict[str, RepoInventory] = {}
    for name, r in inv.repositories.items():
        tags = {t: d for t, d in r.tags.items() if r.push_times.get(t, at) <= at}
        untagged = [d for d in r.untagged if r.untagged_pushed.get(d, at) <= at]
        if tags or untagged:
            live = {m.digest: m for m in r.closure(set(tags.values()) | set(untagged))}
            repos[name] = replace(r, tags=tags, untagged=untagged, manifests=live)
    return replace(inv, repositories=repos, scanned_at=at)


def history_as_of(base: PullHistory | None, days: PullDays, day: date) -> PullHistory:
    """The pull history known at the end of ``day``: the last pull day up to it per image (as
    the end of that day), collection start and gaps as recorded, the receiver alive then."""
    at = end_of(day)
    last = {}
    for key, seq in days.items():
        known = [d for d, _ in seq if d <= day]
        if known:
            last[key] = end_of(max(known))
    since = base.since if base is not None else None
    gaps = [g for g in base.gaps if g.start <= at] if base is not None else []
    return PullHistory(base.registry if base else "", last, since, gaps, at, timedelta(days=1))


def pulls_after(seq: list[tuple[date, int]], day: date) -> tuple[date | None, int]:
    after = [(d, n) for d, n in seq if d > day]
    return (after[0][0] if after else None), sum(n for _, n in after)


def run(
    inv: Inventory,
    resolve: Resolver,
    days: PullDays,
    *,
    job: str,
    now: datetime,
    since: timedelta,
    history: PullHistory | None = None,
    in_use: InUse | None = None,
    **plan_kw,
) -> Backtest:
    """Both questions (module docstring); ``plan_kw``: the job's ``max_delete_fraction`` and
    ``untagged_grace``."""
    out = Backtest(inv.registry, job, now, since)
    today = plan(inv, resolve, now=now, in_use=in_use, pulls=history, **plan_kw)
    out.deleted_now = len(today.deleted_manifests())
    start = (now - since).date()
    for m in today.deleted_manifests():
        seq = [(d, n) for d, n in days.get((m.repository, m.digest), []) if d >= start]
        if seq:
            why = _why(today, m)
            reg = Regret("now", now.date(), m.repository, m.digest, m.tags, m.rule, why, seq[-1][0], 0)
            reg.pulls_after = sum(n for _, n in seq)
            out.regrets.append(reg)
    _replay(out, inv, resolve, days, history, in_use, start, plan_kw)
    return out


def _replay(out: Backtest, inv, resolve, days: PullDays, history, in_use, start: date, plan_kw) -> None:
    gone: set[tuple[str, str]] = set()
    day = start
    while day < out.now.date():
        p = plan(  # no Kubernetes view as of D: what runs now is checked afterwards
            inventory_as_of(inv, end_of(day)),
            resolve,
            now=end_of(day),
            pulls=history_as_of(history, days, day),
            **plan_kw,
        )
        out.days += 1
        for m in p.manifests:
            key = (m.repository, m.digest)
            if m.action != DELETE or key in gone:
                continue
            gone.add(key)
            first, n = pulls_after(days.get(key, []), day)
            running = _running(in_use, inv, m.repository, m.digest)
            if n or running:
                why = _why(p, m)
                out.regrets.append(
                    Regret("replay", day, m.repository, m.digest, m.tags, m.rule, why, first, n, running)
                )
        day += timedelta(days=1)
    out.deleted_replay = len(gone)


def _why(p, m) -> str:
    """Why the rules delete the image, in the rule's words (its tags' delete reasons, e.g.
    ``week: older than 7d``); the manifest's own reason for an untagged one."""
    why = sorted(
        {
            t.reason
            for t in p.tags
            if t.digest == m.digest and t.action == DELETE and t.repository == m.repository
        }
    )
    return "; ".join(why) or m.reason


def _running(in_use: InUse | None, inv: Inventory, repo: str, digest: str) -> tuple[str, ...]:
    """Kubernetes sources that run the image now (by digest, or by a tag it had then)."""
    if in_use is None:
        return ()
    r = inv.repositories.get(repo)
    tags = [t for t, d in r.tags.items() if d == digest] if r else []
    found = [str(s) for s in in_use.is_protected(repo, None, digest)]
    for t in tags:
        found += [str(s) for s in in_use.is_protected(repo, t, digest) if str(s) not in found]
    return tuple(found)
