"""Today's keys and the equivalent ordered rules give the same plans, and the example configs'
plans are what they were before ordered rules existed (golden files written by the engine as it
was before, ``tests/fixtures/plans/``; regenerate only on purpose: ``python -m
tests.unit.test_rules_equivalence`` from a checkout of that engine)."""

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from regkeeper.config import TierConfig, load_config
from regkeeper.policy import gc_resolver, plan, tier_resolver
from regkeeper.pulls.history import PullHistory

from .test_policy import NOW, FakeInUse, ago, dg, image, index, inv, repo, sig_tag

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "plans"
EXAMPLES = {
    "example": ROOT / "examples" / "regkeeper.yaml",
    "demo": ROOT / "examples" / "demo" / "regkeeper.yaml",
}
AGES = [0.5, 2, 5, 9, 20, 31, 40, 80, 100, 200]
REPOS = [
    "library/nginx",
    "base/alpine",
    "team-a/app",
    "team-b/svc",
    "tmp/x",
    "ci/build",
    "other/thing",
    "app",
]


def _repo(name: str):
    """Ten dated images (one an index with two children, one signed), extra tags (latest,
    stable, v1.0 on old digests, a tag sharing a digest), an unknown-age image and orphans."""
    ms, tags, pushed = [], {}, {}
    for i, age in enumerate(AGES):
        m = f"{name}-{i}"
        if i == 4:
            ms += [index(m, [f"{m}-amd64", f"{m}-arm64"]), image(f"{m}-amd64"), image(f"{m}-arm64")]
        else:
            ms.append(image(m, layers={f"{m}-l": 1000 + i, "shared-base": 5000}))
        tags[f"b{i}"], pushed[f"b{i}"] = m, age
    ms.append(image(f"{name}-sig"))
    tags[sig_tag(f"{name}-6")], pushed[sig_tag(f"{name}-6")] = f"{name}-sig", 1
    tags.update({"latest": f"{name}-9", "stable": f"{name}-8", "v1.0": f"{name}-7", "alias": f"{name}-5"})
    pushed.update({"latest": 200, "stable": 100, "v1.0": 80, "alias": 31})
    ms.append(image(f"{name}-undated"))
    tags["undated"] = f"{name}-undated"
    ms += [
        image(f"{name}-orphan-old"),
        image(f"{name}-orphan-new"),
        image(f"{name}-dangling", subject="gone"),
    ]
    untagged = [
        f"{name}-4-amd64",
        f"{name}-4-arm64",
        f"{name}-orphan-old",
        f"{name}-orphan-new",
        f"{name}-dangling",
    ]
    r = repo(name, ms, tags, pushed, untagged)
    r.untagged_pushed = {dg(u): ago(0.2 if u.endswith("new") else 50) for u in untagged}
    return r


def _inventory():
    return inv(*[_repo(n) for n in REPOS])


def _kube():
    return FakeInUse(
        tags=[("team-a/app", "b8", "prod/Deployment/web")], digests=[("app", dg("app-9"), "ci/Pod/x")]
    )


def snapshot(p) -> dict:
    """What a plan decides, in the fields both engines have."""
    return {
        "tags": sorted([t.repository, t.tag, t.action, t.reason, t.rule] for t in p.tags),
        "manifests": sorted([m.repository, m.digest[:19], m.action, m.reason] for m in p.manifests),
        "delete_order": [[r, d[:19]] for r, d in p.manifests_to_delete()],
        "bytes_freed": p.bytes_freed,
        "remove": sorted(p.repositories_to_remove),
        "cap": sorted(str(c) for c in p.cap_tripped),
    }


def _actions(p) -> dict:
    s = snapshot(p)
    return {
        "tags": [(r, t, a) for r, t, a, _, _ in s["tags"]],
        "manifests": [(r, d, a) for r, d, a, _ in s["manifests"]],
        **{k: s[k] for k in ("delete_order", "bytes_freed", "remove", "cap")},
    }


UNTAGGED = {"name": "untagged", "tagStatus": "untagged", "delete": {"olderThan": "0s"}}


def _rules(keep: dict | None, older: str, pulled: str | None = None) -> list:
    keep = dict(keep or {})
    if pulled:
        keep["pulledWithin"] = pulled
    tagged = {"delete": {"olderThan": older}} | ({"keep": keep} if keep else {})
    untagged = dict(UNTAGGED) | ({"keep": {"pulledWithin": pulled}} if pulled else {})
    return TierConfig.model_validate({"name": "x", "match": ["**"], "rules": [tagged, untagged]}).rules


PROTECT = ["latest", "v*"]
CASES = ["gc days+keepLast", "gc keepLast only", "tier keepDays only", "tier keepLast+keepDays, protect"]


def _as_tier(rules) -> list[dict]:
    return [r.model_dump(by_alias=True, exclude_none=True) for r in rules]


def _case(name: str):
    """(resolver with today's keys, resolver with the equivalent rules)."""
    return {
        "gc days+keepLast": (
            gc_resolver(["**"], ["base/**"], 30, 2, PROTECT),
            gc_resolver(
                ["**"], ["base/**"], None, None, PROTECT, rules=_rules({"last": 2, "newerThan": "30d"}, "30d")
            ),
        ),
        "gc keepLast only": (
            gc_resolver(["**"], [], None, 3, PROTECT),
            gc_resolver(["**"], [], None, None, PROTECT, rules=_rules({"last": 3}, "0s")),
        ),
        "tier keepDays only": (
            tier_resolver([{"name": "t", "match": ["team-*/**", "app"], "keepDays": 10}]),
            tier_resolver(
                [{"name": "t", "match": ["team-*/**", "app"], "rules": _as_tier(_rules(None, "10d"))}]
            ),
        ),
        "tier keepLast+keepDays, protect": (
            tier_resolver(
                [{"name": "t", "match": ["**"], "keepLast": 4, "keepDays": 20, "protect": ["stable"]}]
            ),
            tier_resolver(
                [
                    {
                        "name": "t",
                        "match": ["**"],
                        "protect": ["stable"],
                        "rules": _as_tier(_rules({"last": 4, "newerThan": "20d"}, "20d")),
                    }
                ]
            ),
        ),
    }[name]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube", [False, True])
def test_old_keys_and_equivalent_rules_plan_alike(case, kube):
    old, new = _case(case)
    kw = {"in_use": _kube() if kube else None, "now": NOW}
    a, b = plan(_inventory(), old, **kw), plan(_inventory(), new, **kw)
    assert a.deleted_tags() and a.deleted_manifests()  # the comparison is about real deletes
    assert _actions(a) == _actions(b)


@pytest.mark.parametrize("since_days", [60, 3])  # history covers the window / is shorter
def test_pulled_within_old_key_and_rule_plan_alike(since_days):
    pulled = {(n, dg(f"{n}-{i}")): ago(1) for n in REPOS for i in (6, 7)}
    pulled |= {(n, dg(f"{n}-orphan-old")): ago(2) for n in REPOS}
    hist = PullHistory("local-registry", pulled, since=ago(since_days), alive=NOW)
    old = gc_resolver(["**"], [], 30, 2, PROTECT, pulled_within=timedelta(days=30))
    new = gc_resolver(
        ["**"], [], None, None, PROTECT, rules=_rules({"last": 2, "newerThan": "30d"}, "30d", "30d")
    )
    a, b = plan(_inventory(), old, now=NOW, pulls=hist), plan(_inventory(), new, now=NOW, pulls=hist)
    assert _actions(a) == _actions(b)
    kept = {(t.repository, t.tag) for t in a.kept_tags()}
    assert ("team-a/app", "b6") in kept  # old and pulled yesterday: kept by both
    assert bool(a.deleted_tags()) == (since_days == 60)


def _config_plans(path: Path) -> dict:
    text = re.sub(
        r"\{\{(\w+)\}\}",
        lambda m: f"http://127.0.0.1:1/{m[1]}" if m[1].endswith("URL") else f"/tmp/{m[1]}",
        path.read_text(),
    )
    tmp = Path("/tmp") / f"regkeeper-golden-{path.parent.name}.yaml"
    tmp.write_text(text)
    cfg = load_config(tmp)
    g, e = cfg.gc, cfg.expire
    gc = gc_resolver(g.include, g.exclude, g.days, g.keep_last, g.protect, delete_untagged=g.delete_untagged)
    tiers = tier_resolver(cfg.tiers, default=e.default_tier if e else None)
    out = {}
    for job, res, frac in [
        ("gc", gc, g.max_delete_fraction),
        ("expire", tiers, e.max_delete_fraction if e else 0.5),
    ]:
        for kube in (False, True):
            p = plan(_inventory(), res, now=NOW, in_use=_kube() if kube else None, max_delete_fraction=frac)
            out[f"{job}{'-kube' if kube else ''}"] = snapshot(p)
    return out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_config_plans_unchanged(name):
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    got = json.loads(json.dumps(_config_plans(EXAMPLES[name])))
    assert any(t[2] == "delete" for t in got["expire"]["tags"])
    assert got == want


if __name__ == "__main__":  # write the golden files (from the engine the plans must not drift from)
    for n, p in EXAMPLES.items():
        plans = _config_plans(p)
        lines = ",\n".join(
            f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(plans.items())
        )
        (GOLDEN / f"{n}.json").write_text("{\n" + lines + "\n}\n")
        print("wrote", GOLDEN / f"{n}.json", file=sys.stderr)
