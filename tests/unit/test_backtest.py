"""The backtest's replay on a generated pull history (pure: no network, no Prefect): it names
exactly the images a too-aggressive rule would have deleted and that were pulled (or run in
Kubernetes) afterwards, and not the others."""

from datetime import timedelta

from regkeeper.backtest import build_report, inventory_as_of, run
from regkeeper.policy import tier_resolver
from regkeeper.pulls.history import PullHistory

from .test_policy import NOW, FakeInUse, ago, dg, image, inv, repo

REPO = "team/app"
# image -> pushed (days ago); pulls: image -> the days (ago) it was pulled
PUSHED = {"hot": 60, "cold": 55, "early": 50, "late": 45, "running": 40, "fresh": 3}
PULLS = {
    "hot": list(range(1, 61)),  # every day since its push
    "early": [48],  # pulled two days after its push, before the rule deletes it (day 43)
    "late": [5],  # pulled long after the rule deleted it
    "fresh": [1, 2],  # too young to be deleted
}
AGGRESSIVE = [{"name": "week", "delete": {"olderThan": "7d"}}]
CAREFUL = [{"name": "used", "keep": {"pulledWithin": "30d"}}, {"name": "week", "delete": {"olderThan": "7d"}}]


def _inventory():
    return inv(repo(REPO, [image(n) for n in PUSHED], {n: n for n in PUSHED}, PUSHED))


def _days():
    out = {}
    for n, ds in PULLS.items():
        out[(REPO, dg(n))] = sorted(((NOW - timedelta(days=d)).date(), 3) for d in ds)
    return out


def _history():
    last = {(REPO, dg(n)): ago(min(ds)) for n, ds in PULLS.items()}
    return PullHistory("local-registry", last, since=ago(100), alive=NOW)


def _run(rules, **kw):
    res = tier_resolver([{"name": "t", "match": ["**"], "rules": rules}])
    kube = FakeInUse(digests=[(REPO, dg("running"), "prod/Deployment/api")])
    return run(
        _inventory(),
        res,
        _days(),
        job="expire",
        now=NOW,
        since=timedelta(days=90),
        history=_history(),
        in_use=kube,
        untagged_grace=timedelta(0),
        max_delete_fraction=1.0,
        **kw,
    )


def _names(regrets):
    names = {dg(n): n for n in PUSHED}
    return {names[r.digest] for r in regrets}


def test_aggressive_rule_regrets_exactly_the_images_wanted_afterwards():
    bt = _run(AGGRESSIVE)
    assert _names(bt.of_kind("replay")) == {"hot", "late", "running"}
    by = {r.digest: r for r in bt.of_kind("replay")}
    hot, late, running = by[dg("hot")], by[dg("late")], by[dg("running")]
    assert hot.day == (NOW - timedelta(days=53)).date()  # pushed 60 days ago + 7 days
    assert hot.rule == "tier:t/week" and hot.reason == "week: older than 7d"  # the rule's words
    assert hot.pulled_after == (NOW - timedelta(days=52)).date() and hot.pulls_after == 52 * 3
    assert late.pulled_after == (NOW - timedelta(days=5)).date() and late.pulls_after == 3
    assert running.in_use == ("prod/Deployment/api",) and running.pulls_after == 0
    # cold was never wanted and early only before the deletion: not regrets; fresh never deleted
    assert bt.deleted_replay == 5
    # now: deleted today (running is in use today: kept) and pulled within the last 90 days
    assert _names(bt.of_kind("now")) == {"hot", "early", "late"}
    assert bt.days == 90


def test_careful_rule_keeps_what_is_pulled():
    bt = _run(CAREFUL)
    # hot is pulled every day: never deleted; late was deleted (no pull for 30 days) and then pulled
    assert _names(bt.of_kind("replay")) == {"late", "running"}
    assert _names(bt.of_kind("now")) == {"early"}  # late was pulled 5 days ago: kept today


def test_inventory_as_of_leaves_out_later_pushes():
    got = inventory_as_of(_inventory(), ago(42)).repositories[REPO].tags
    assert set(got) == {"hot", "cold", "early", "late"}


def test_report_has_the_regret_table():
    rep = build_report(_run(AGGRESSIVE))
    rows = rep.table("regret").rows
    assert {r["kind"] for r in rows} == {"now", "replay"} and len(rows) == 6
    assert rep.status == "dry-run" and any("Nothing was deleted" in h for h in rep.headline)
    assert "tier:t/week" in rep.csv_text(rep.table("regret"))
    assert rep.title == "backtest of the expire rules over 90d"  # the registry: once, after " — "


def test_report_says_what_regret_is_and_what_to_do_about_it():
    rep = build_report(_run(AGGRESSIVE))
    # hot, early, late (now) and hot, late, running (replay): 4 distinct images, one rule
    assert rep.headline[2].startswith("Regret = an image the rules delete that someone wanted afterwards")
    assert rep.headline[2].endswith("Images regretted by rule: tier:t/week: 4.")
    assert "`keep: {pulledWithin: 90d}` in the ordered rule named" in rep.headline[3]
    assert rep.headline[-1] == "Nothing was deleted: a backtest only reads."
    assert any(n.startswith("Reading the regret table: kind `now`") for n in rep.notes)
    md = rep.markdown()
    assert md.index("Regret = an image") < md.index("## Figures")


def test_report_without_regret_says_so():
    bt = _run(AGGRESSIVE)
    bt.regrets.clear()
    rep = build_report(bt)
    assert rep.headline[2] == (
        "No regret over 90d: no image these rules delete was pulled afterwards or is run in Kubernetes now."
    )
    assert not any(h.startswith("Regret =") for h in rep.headline)
    rows, _ = rep.artifact_table()
    assert rows[0]["kind"] == "No regret: no image these rules delete was wanted afterwards."


def test_the_backtest_picks_the_registry_its_job_would_and_refuses_a_proxy(tmp_path):
    """``--job expire`` without ``--registry`` replays the registry an expire run acts on
    (expire.registry, else gc.registry: it took the first registry), and a proxy registry is
    refused by name before anything is read (a scan through it would fill the cache)."""
    import pytest

    from regkeeper.backtest.run import job_registry
    from regkeeper.context import RunContext
    from regkeeper.errors import RefusedError

    cfg = tmp_path / "regkeeper.yaml"
    cfg.write_text(
        "mirrorRepositories:\n"
        "- {name: first, url: 'http://127.0.0.1:9'}\n"
        "- {name: second, url: 'http://127.0.0.1:9'}\n"
        "- {name: cache, type: proxy, url: 'http://127.0.0.1:9', upstream: 'http://127.0.0.1:9'}\n"
        "gc: {registry: second}\n"
        "tiers: [{name: all, match: ['**'], keepLast: 3}]\n"
    )
    ctx = RunContext.load(str(cfg))
    try:
        assert job_registry(ctx, "expire", None) == "second"
        assert job_registry(ctx, "gc", None) == "second"
        assert job_registry(ctx, "expire", "first") == "first"
        with pytest.raises(RefusedError, match=r"registry cache \(backtest\): it is type proxy"):
            job_registry(ctx, "gc", "cache")
    finally:
        ctx.close()
