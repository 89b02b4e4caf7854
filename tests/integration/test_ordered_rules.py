"""Ordered rules on a real distribution 2.8: "delete `pr-*` after 7 days, keep the last 10
`v*`" through the expire pipeline, every decision naming the rule in the report (CSV / JSON),
and what is deleted is exactly that (the rest, including a tag no rule selects, is still there).
Ages are set on the registry's storage (tag link mtimes), never by sleeping."""

import csv
from datetime import UTC, datetime, timedelta

from regkeeper import prune
from regkeeper.context import load_context
from regkeeper.inventory import scan
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, truth

NAME = "local-registry"
REPO = "apps/web"
TIER = {
    "name": "apps",
    "match": ["apps/**"],
    "rules": [
        {"name": "pull-requests", "tags": ["pr-*"], "delete": {"olderThan": "7d"}},
        {"name": "releases", "tags": ["v*"], "keep": {"last": 10}, "delete": {"olderThan": "30d"}},
    ],
}
AGES = {f"v{i}": 40 + i for i in range(1, 13)} | {"pr-1": 2, "pr-2": 5, "pr-3": 9, "pr-4": 20, "main": 300}


def test_pr_deleted_after_7_days_last_10_releases_stay(registry_factory, tmp_path):
    reg = registry_factory()
    digests = {t: images.push_image(reg.url, REPO, t, seed=t, verify=False).digest for t in AGES}
    now = datetime.now(UTC)
    for t, days in AGES.items():
        age(reg.root, REPO, [t], (now - timedelta(days=days)).timestamp())
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, NAME, reclaim="none")],
        tiers=[TIER],
        expire={"registry": NAME, "maxDeleteFraction": 0.9},
    )
    ctx = load_context(cfg)
    try:
        inv = scan(ctx.client(NAME), storage=ctx.storage(NAME))
        ks = prune.read_kubernetes(ctx, NAME)
        plan = prune.expire_plan(ctx, NAME, inv, ks, now=now)
        report = prune.build_report("expire", NAME, plan, inv=inv, kstate=ks, dry_run=False)
        gone = {"pr-3", "pr-4", "v11", "v12"}
        assert {t.tag for t in plan.deleted_tags()} == gone
        rules = {t.tag: (t.action, t.rule) for t in plan.tags}
        assert rules["pr-3"] == ("delete", "tier:apps/pull-requests")
        assert rules["v12"] == ("delete", "tier:apps/releases")
        assert all(rules[f"v{i}"] == ("keep", "tier:apps/releases") for i in range(1, 11))
        assert rules["pr-1"] == ("keep", "tier:apps/pull-requests") and rules["main"] == ("keep", "tier:apps")
        done = prune.delete_batch(
            ctx, NAME, plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan)
        )
        assert sorted(d for _, d in done.deleted) == sorted(digests[t] for t in gone)
        after = truth(reg.url)
        assert set(after) == {(REPO, t) for t in AGES if t not in gone}
        assert all(after[(REPO, t)] == digests[t] for t in AGES if t not in gone)
        # the report names the rule per decision: its CSV (written) and its HTML
        paths = report.finish("ok").write(tmp_path / "reports")
        written = [p for k, p in paths.items() if k.startswith("csv")]
        rows = [r for p in written for r in csv.DictReader(open(p)) if r.get("tag")]
        by_tag = {r["tag"]: r for r in rows}
        assert by_tag["pr-4"]["rule"] == "tier:apps/pull-requests"
        assert by_tag["pr-4"]["reason"] == "pull-requests: older than 7d"
        assert by_tag["v3"]["reason"] == "releases: among newest 10 of its selection"
        assert by_tag["main"]["reason"] == "no rule selects this tag"
        assert "tier:apps/releases" in open(paths["html"]).read()
    finally:
        ctx.close()
