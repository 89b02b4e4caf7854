"""gc with ``pulledWithin`` on a real distribution 2.8: an old image pulled yesterday is kept
(the decision names the pull time), an old image never pulled (or pulled before the window) is
deleted; with collection younger than the window, or a gap in it, nothing is deleted for that
reason and the report says why. Time is simulated through the store, never by sleeping."""

from datetime import UTC, datetime, timedelta

import pytest

from regkeeper import prune
from regkeeper.context import load_context
from regkeeper.inventory import scan
from regkeeper.pulls.store import PullStore
from tests.support import images
from tests.support.pulls import NAME
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, truth

REPO = "team/app"
GC = {"registry": NAME, "days": 30, "keepLast": 1, "protect": [], "pulledWithin": "30d"}


@pytest.fixture
def old_images(registry_factory):
    reg = registry_factory()
    pushed = {
        t: images.push_image(reg.url, REPO, t, seed=t, verify=False)
        for t in ("pulled", "unpulled", "stale", "new")
    }
    age(reg.root, REPO, ["pulled", "unpulled", "stale"], (datetime.now(UTC) - timedelta(days=60)).timestamp())
    return reg, {t: p.digest for t, p in pushed.items()}


def setup_run(reg, tmp_path, store_url: str | None = None):
    pulls = {"store": store_url} if store_url else {}
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, NAME, reclaim="none")],
        gc=GC,
        pulls=pulls,
        stateDir=str(tmp_path / "state"),
    )
    ctx = load_context(cfg)
    return ctx, PullStore(ctx.config.pulls_store_url())


def plan_gc(ctx, now):
    inv = scan(ctx.client(NAME), storage=ctx.storage(NAME))
    ks = prune.read_kubernetes(ctx, NAME)
    plan = prune.gc_plan(ctx, NAME, inv, ks, now=now)
    report = prune.build_report("gc", NAME, plan, inv=inv, kstate=ks, dry_run=True)
    return inv, plan, report, {t.tag: t for t in plan.tags}


def history(store, digests, now, *, since_days: float):
    store.mark_collection_start(NAME, now - timedelta(days=since_days))
    store.record_pull(NAME, REPO, digests["pulled"], now - timedelta(days=1), "pulled", "containerd/1.7")
    store.record_pull(NAME, REPO, digests["stale"], now - timedelta(days=45), "stale", "containerd/1.7")
    store.heartbeat(now)


def run_gc(store_url, old_images, tmp_path):
    reg, digests = old_images
    ctx, store = setup_run(reg, tmp_path, store_url)
    now = datetime.now(UTC)
    history(store, digests, now, since_days=40)
    inv, plan, report, tags = plan_gc(ctx, now)
    assert tags["pulled"].action == "keep"
    assert tags["pulled"].reason.startswith("pulled 20") and tags["pulled"].reason.endswith("(within 30d)")
    assert tags["pulled"].overridden is None  # the rule itself keeps it: pulled within the window
    assert tags["unpulled"].action == "delete" and tags["stale"].action == "delete"
    assert tags["new"].action == "keep"
    assert any("pull history covers the window" in n for n in report.notes)
    done = prune.delete_batch(
        ctx, NAME, plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan)
    )
    assert sorted(d for _, d in done.deleted) == sorted([digests["unpulled"], digests["stale"]])
    after = truth(reg.url)
    assert set(after) == {(REPO, "pulled"), (REPO, "new")}
    # the per-day history a backtest replays, on either store
    days = store.pull_days(NAME)
    assert days[(REPO, digests["pulled"])] == [((now - timedelta(days=1)).date(), 1)]
    store.close()
    ctx.close()


def test_gc_keeps_an_old_image_pulled_yesterday_and_deletes_the_unpulled(
    old_images, tmp_path, pull_store_url
):
    run_gc(pull_store_url, old_images, tmp_path)


@pytest.mark.parametrize("since_days,gap", [(5, False), (40, True)])
def test_history_shorter_than_the_window_deletes_nothing_and_says_why(
    old_images, tmp_path, since_days, gap, pull_store_url
):
    reg, digests = old_images
    ctx, store = setup_run(reg, tmp_path, pull_store_url)
    now = datetime.now(UTC)
    history(store, digests, now, since_days=since_days)
    if gap:
        store.add_gap(NAME, now - timedelta(days=10), now - timedelta(days=9), "receiver down")
    before = truth(reg.url)
    inv, plan, report, tags = plan_gc(ctx, now)
    assert plan.deleted_tags() == [] and plan.deleted_manifests() == []
    want = (
        "pull history has a gap in the window"
        if gap
        else "pull history shorter than the window (collecting since"
    )
    for t in ("unpulled", "stale"):
        assert tags[t].action == "keep" and tags[t].reason.startswith(want), tags[t].reason
        assert tags[t].overridden is None
    assert tags["pulled"].reason.startswith("pulled ")  # a real pull still says so
    assert any(want in n and "every image the rule would delete is kept" in n for n in report.notes), (
        report.notes
    )
    done = prune.delete_batch(ctx, NAME, plan.manifests_to_delete(), inv)
    assert done.deleted == [] and truth(reg.url) == before
    store.close()
    ctx.close()


def test_a_receiver_silent_longer_than_the_tolerance_is_a_gap(old_images, tmp_path):
    reg, digests = old_images
    ctx, store = setup_run(reg, tmp_path)
    now = datetime.now(UTC)
    history(store, digests, now - timedelta(hours=1), since_days=40)  # last heartbeat an hour ago
    _, plan, _, tags = plan_gc(ctx, now)
    assert plan.deleted_tags() == []
    assert "receiver not heard from since" in tags["unpulled"].reason
    store.close()
    ctx.close()
