"""Ordered rules (``tiers[].rules`` / ``gc.rules``): pure planner tests, no network, no Prefect.

The engine is the one planner: these plans go through ``policy.plan`` with a RepoPolicy whose
``rules`` came from the config, like any tier.
"""

from datetime import timedelta

import pytest

from regkeeper.config import ConfigError, TierConfig, parse_config
from regkeeper.policy import RepoPolicy, gc_resolver, plan, tier_resolver
from regkeeper.pulls.history import PullHistory

from .test_policy import NOW, ago, by_tag, dg, image, index, inv, repo, sig_tag

RELEASES_AND_PRS = {
    "name": "apps",
    "match": ["apps/**"],
    "rules": [
        {"name": "pull-requests", "tags": ["pr-*"], "delete": {"olderThan": "7d"}},
        {"name": "releases", "tags": ["v*"], "keep": {"last": 10}, "delete": {"olderThan": "30d"}},
    ],
}


def _apps_repo():
    ms, tags, pushed = [], {}, {}
    for i in range(1, 16):  # v1 newest (41 days) ... v15 oldest (55 days): all past 30 days
        ms.append(image(f"v{i}"))
        tags[f"v{i}"], pushed[f"v{i}"] = f"v{i}", 40 + i
    for i, age in enumerate([2, 5, 8, 20, 30], start=1):
        ms.append(image(f"pr-{i}"))
        tags[f"pr-{i}"], pushed[f"pr-{i}"] = f"pr-{i}", age
    ms.append(image("main"))
    tags["main"], pushed["main"] = "main", 300
    return repo("apps/web", ms, tags, pushed)


def test_pr_deleted_after_7_days_last_10_releases_stay_rule_named():
    p = plan(inv(_apps_repo()), tier_resolver([RELEASES_AND_PRS]), now=NOW)
    t = by_tag(p)
    gone = {x.tag for x in p.deleted_tags()}
    assert gone == {"pr-3", "pr-4", "pr-5"} | {f"v{i}" for i in range(11, 16)}
    for i in range(1, 11):
        assert t[f"v{i}"].action == "keep"
        assert t[f"v{i}"].rule == "tier:apps/releases"
        assert t[f"v{i}"].reason == "releases: among newest 10 of its selection"
    assert t["v11"].rule == "tier:apps/releases" and t["v11"].reason == "releases: older than 30d"
    assert t["pr-3"].rule == "tier:apps/pull-requests" and t["pr-3"].reason == "pull-requests: older than 7d"
    assert t["pr-2"].action == "keep" and t["pr-2"].rule == "tier:apps/pull-requests"
    assert t["pr-2"].reason == "pull-requests: not older than 7d yet"  # which condition, in its words
    # a tag no rule selects is kept, however old
    assert (t["main"].action, t["main"].reason, t["main"].rule) == (
        "keep",
        "no rule selects this tag",
        "tier:apps",
    )
    # the manifests name the rule too
    md = {m.digest: m for m in p.manifests}
    assert md[dg("pr-4")].rule == "tier:apps/pull-requests" and md[dg("pr-4")].action == "delete"
    assert md[dg("v1")].rule == "tier:apps/releases" and md[dg("v1")].action == "keep"
    assert md[dg("main")].rule == "tier:apps"


def test_a_rule_with_keep_conditions_only_says_so():
    rules = [{"name": "pinned", "tags": ["v*"], "keep": {"last": 1}}]
    r = repo("a", [image("v1"), image("v2")], {"v1": "v1", "v2": "v2"}, {"v1": 90, "v2": 80})
    t = by_tag(plan(inv(r), tier_resolver([{"name": "t", "match": ["**"], "rules": rules}]), now=NOW))
    assert (t["v2"].action, t["v2"].reason) == ("keep", "pinned: among newest 1 of its selection")
    assert (t["v1"].action, t["v1"].reason) == ("keep", "pinned: no delete condition (keep conditions only)")


def test_keep_wins_over_delete_whatever_the_order():
    rules = [
        {"name": "everything", "delete": {"olderThan": "1d"}},
        {"name": "pinned", "tags": ["keep-*"], "keep": {"newerThan": "400d"}},
    ]
    r = repo("a", [image("x"), image("y")], {"keep-x": "x", "y": "y"}, {"keep-x": 90, "y": 90})
    p = plan(inv(r), tier_resolver([{"name": "t", "match": ["**"], "rules": rules}]), now=NOW)
    t = by_tag(p)
    assert (t["keep-x"].action, t["keep-x"].rule) == ("keep", "tier:t/pinned")
    assert (t["y"].action, t["y"].rule) == ("delete", "tier:t/everything")


def test_keep_last_counts_per_selection_and_shared_digest():
    # v1 and pr-1 are the same image: a keep of v1 keeps the digest, pr-1 says so
    rules = [
        {"name": "pr", "tags": ["pr-*"], "delete": {"olderThan": "7d"}},
        {"name": "rel", "tags": ["v*"], "keep": {"last": 1}},
    ]
    ms = [image("a"), image("b")]
    r = repo("a", ms, {"v1": "a", "pr-1": "a", "v0": "b"}, {"v1": 50, "pr-1": 50, "v0": 60})
    p = plan(inv(r), tier_resolver([{"name": "t", "match": ["**"], "rules": rules}]), now=NOW)
    t = by_tag(p)
    assert t["v1"].action == "keep" and t["v0"].action == "keep"  # rel has no delete: v0 kept
    assert t["pr-1"].action == "keep" and t["pr-1"].reason == "shares digest with kept tag v1"
    assert t["pr-1"].overridden == "pr: older than 7d"


def test_untagged_rules_and_unselected_untagged_kept():
    ms = [index("idx", ["amd64"]), image("amd64"), image("old-orphan"), image("new-orphan")]
    r = repo("a", ms, {"v1": "idx"}, {"v1": 100}, untagged=["amd64", "old-orphan", "new-orphan"])
    r.untagged_pushed = {dg("old-orphan"): ago(10), dg("new-orphan"): ago(0.5), dg("amd64"): ago(100)}
    tagged = {"name": "rel", "tags": ["v*"], "keep": {"last": 5}}
    untagged = {"name": "dangling", "tagStatus": "untagged", "delete": {"olderThan": "1d"}}
    res = tier_resolver([{"name": "t", "match": ["**"], "rules": [tagged, untagged]}])
    p = plan(inv(r), res, now=NOW, untagged_grace=timedelta(0))
    md = {m.digest: m for m in p.manifests}
    assert md[dg("old-orphan")].action == "delete"
    assert md[dg("old-orphan")].reason == "untagged, dangling: older than 1d"
    assert md[dg("old-orphan")].rule == "tier:t/dangling"
    assert md[dg("new-orphan")].action == "keep"
    assert md[dg("amd64")].action == "keep"  # a child follows its kept index, not the untagged rule
    # without a rule selecting untagged manifests, none is deleted
    p2 = plan(inv(r), tier_resolver([{"name": "t", "match": ["**"], "rules": [tagged]}]), now=NOW)
    assert p2.manifests_to_delete() == []
    assert {m.digest: m for m in p2.manifests}[dg("old-orphan")].reason.endswith(
        "no rule selects this untagged manifest"
    )


def test_referrer_follows_subject_and_protect_still_applies():
    rules = [{"name": "all", "tags": ["*"], "delete": {"olderThan": "1d"}}]
    ms = [image("s"), image("sig"), image("p")]
    r = repo(
        "a", ms, {"v1": "s", sig_tag("s"): "sig", "latest": "p"}, {"v1": 50, sig_tag("s"): 1, "latest": 50}
    )
    res = gc_resolver(
        ["**"],
        [],
        None,
        None,
        ["latest"],
        rules=TierConfig.model_validate({"name": "x", "match": ["**"], "rules": rules}).rules,
    )
    t = by_tag(plan(inv(r), res, now=NOW))
    assert t["v1"].action == "delete" and t[sig_tag("s")].action == "delete"
    assert t["latest"].action == "keep" and t["latest"].reason == "protected tag pattern 'latest'"


def test_pulled_within_rule_and_fail_safe():
    rules = [
        {"name": "used", "keep": {"pulledWithin": "30d"}},
        {"name": "old", "delete": {"olderThan": "7d"}},
    ]
    res = tier_resolver([{"name": "t", "match": ["**"], "rules": rules}])
    r = repo("a", [image("x"), image("y")], {"x": "x", "y": "y"}, {"x": 90, "y": 90})
    covered = PullHistory("local-registry", {("a", dg("x")): ago(1)}, since=ago(60), alive=NOW)
    t = by_tag(plan(inv(r), res, now=NOW, pulls=covered))
    assert (t["x"].action, t["x"].rule) == ("keep", "tier:t/used")
    assert t["x"].reason.startswith("used: pulled ")
    assert (t["y"].action, t["y"].rule) == ("delete", "tier:t/old")
    short = PullHistory("local-registry", {("a", dg("x")): ago(1)}, since=ago(3), alive=NOW)
    t = by_tag(plan(inv(r), res, now=NOW, pulls=short))
    assert t["y"].action == "keep" and "pull history shorter than the window" in t["y"].reason
    assert t["y"].rule == "tier:t/used"
    t = by_tag(plan(inv(r), res, now=NOW, pulls=None))
    assert t["y"].action == "keep" and "pull history unavailable" in t["y"].reason


def test_age_unknown_is_never_deleted_by_a_rule():
    rules = [{"name": "old", "delete": {"olderThan": "0s"}}]
    r = repo("a", [image("x")], {"x": "x"})
    t = by_tag(plan(inv(r), tier_resolver([{"name": "t", "match": ["**"], "rules": rules}]), now=NOW))
    assert (t["x"].action, t["x"].reason) == ("keep", "old: age unknown")


BASE = "mirrorRepositories:\n- {name: r, type: local, url: 'http://127.0.0.1:5000'}\n"


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + text, "conf.yaml")
    return str(ei.value)


@pytest.mark.parametrize(
    "text,where,what",
    [
        (
            "tiers:\n- {name: a, match: ['**'], keepLast: 1}\n- name: b\n  match: ['x/**']\n  rules:\n"
            "  - {delete: {olderThan: 1d}}\n  - {tagStatus: pushed, delete: {olderThan: 1d}}\n",
            "conf.yaml:9: tiers[1].rules[1].tagStatus",
            "untagged",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], rules: [{tags: ['a*']}]}\n",
            "tiers[0].rules[0]",
            "keep, delete",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], rules: [{tagStatus: untagged, tags: ['a'], "
            "delete: {olderThan: 1d}}]}\n",
            "tiers[0].rules[0]",
            "untagged selection has no tags",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], rules: [{delete: {olderThan: soon}}]}\n",
            "tiers[0].rules[0].delete.olderThan",
            "soon",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], rules: [{keep: {}}]}\n",
            "tiers[0].rules[0].keep",
            "at least one",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], keepLast: 2, rules: [{delete: {olderThan: 1d}}]}\n",
            "tiers[0]",
            "exactly one policy",
        ),
        ("gc: {keepLast: 3, rules: [{delete: {olderThan: 1d}}]}\n", "gc", "cannot be combined with keepLast"),
        (
            "pulls: {}\ntiers:\n- {name: b, match: ['**'], pulledWithin: 30d, rules: [{delete: {olderThan: 1d}}]}\n",
            "tiers[0]",
            "keep: {pulledWithin",
        ),
        (
            "tiers:\n- {name: b, match: ['**'], rules: [{keep: {pulledWithin: 30d}}]}\n",
            "tiers[0].rules[0].keep.pulledWithin",
            "needs a `pulls` section",
        ),
    ],
)
def test_config_errors_name_the_key(text, where, what):
    msg = _err(text)
    assert where in msg and what in msg, msg


def test_rules_policy_refuses_legacy_keys():
    from regkeeper.policy.ordered import OrderedRule

    with pytest.raises(ValueError, match="rules cannot be combined"):
        RepoPolicy("x", keep_last=1, rules=(OrderedRule("r", delete_older=timedelta(0)),))


def test_job_rules_from_config_and_overrides_refused():
    from regkeeper.prune.pipeline import job_rules

    cfg = parse_config(BASE + "gc: {registry: r, rules: [{name: old, delete: {olderThan: 9d}}]}\n", "c.yaml")
    resolve, frac, _ = job_rules(cfg, "gc")
    pol = resolve("team/app")
    assert pol is not None and pol.keep_last is None and pol.max_age is None
    assert [r.label for r in pol.rules] == ["old"] and pol.protect == ("latest",) and frac == 0.5
    with pytest.raises(ConfigError, match="gc.rules: the run's days / keep_last"):
        job_rules(cfg, "gc", days=3)


def test_in_use_index_children_and_the_cap_hold_under_ordered_rules():
    """What ordered rules would delete but must NOT: a tag in use in Kubernetes, an untagged
    manifest a workload runs by digest, an index's child while the index is kept, a blob of a
    kept image; and the cap still trips on a rule that deletes too much."""
    from .test_policy import FakeInUse

    rules = [
        {"name": "all-tags", "tags": ["*"], "delete": {"olderThan": "7d"}},
        {"name": "dangling", "tagStatus": "untagged", "delete": {"olderThan": "1d"}},
        {"name": "pinned", "tags": ["idx"], "keep": {"newerThan": "400d"}},
    ]
    ms = [
        image("used"),
        image("free"),
        index("idx", ["amd64"]),
        image("amd64"),
        image("run-by-digest"),
        image("orphan"),
    ]
    r = repo(
        "a",
        ms,
        {"used": "used", "free": "free", "idx": "idx"},
        {"used": 30, "free": 30, "idx": 30},
        untagged=["amd64", "run-by-digest", "orphan"],
    )
    r.untagged_pushed = {dg(n): ago(30) for n in ("amd64", "run-by-digest", "orphan")}
    kube = FakeInUse(
        tags=[("a", "used", "prod/Deployment/web")],
        digests=[("a", dg("run-by-digest"), "prod/Job/batch")],
    )
    res = tier_resolver([{"name": "t", "match": ["**"], "rules": rules}])
    p = plan(inv(r), res, in_use=kube, now=NOW, max_delete_fraction=1.0, untagged_grace=timedelta(0))
    t = by_tag(p)
    assert (t["used"].action, t["used"].reason, t["used"].overridden) == (
        "keep",
        "in use",
        "all-tags: older than 7d",
    )
    assert (t["idx"].action, t["idx"].rule) == ("keep", "tier:t/pinned")  # keep wins over all-tags
    assert t["free"].action == "delete"
    md = {m.digest: m for m in p.manifests}
    assert md[dg("run-by-digest")].action == "keep" and md[dg("run-by-digest")].in_use == ("prod/Job/batch",)
    assert md[dg("amd64")].action == "keep"  # the kept index's child, not the untagged rule's
    assert {d for _, d in p.manifests_to_delete()} == {dg("free"), dg("orphan")}
    # the same rules under the default cap: 2 of 6 manifests is fine, a cap of 0.2 trips
    assert plan(inv(r), res, in_use=kube, now=NOW, untagged_grace=timedelta(0)).cap_ok
    capped = plan(inv(r), res, in_use=kube, now=NOW, max_delete_fraction=0.2, untagged_grace=timedelta(0))
    assert not capped.cap_ok and "a" in {c.scope for c in capped.cap_tripped}
