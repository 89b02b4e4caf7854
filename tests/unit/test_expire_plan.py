"""expire planning and reporting, pure (no network, no Prefect): the config's tiers and expire
section through ``prune.expire_plan``, the ttl cap rule, and what the report says."""

import hashlib
from datetime import UTC, datetime, timedelta

import yaml

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.models import DOCKER_MANIFEST, Descriptor, Inventory, ManifestInfo, RepoInventory
from regkeeper.policy import REGISTRY_SCOPE, CapBreach
from regkeeper.prune import DeleteResult, ReclaimResult

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
TIERS = [
    {"name": "base", "match": ["library/**"], "keep": "forever"},
    {"name": "business", "match": ["team-*/**"], "keepLast": 1, "keepDays": 30},
    {"name": "temp", "match": ["tmp/**", "ci/**"], "ttl": "72h", "deleteRepository": True},
]


def dg(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def repo(name: str, tags: dict[str, float]) -> RepoInventory:
    """One image per tag; ``tags``: tag -> hours since push (storage push time)."""
    mans = {}
    for t in tags:
        m = f"{name}:{t}"
        mans[dg(m)] = ManifestInfo(
            digest=dg(m),
            media_type=DOCKER_MANIFEST,
            kind="image",
            size=100,
            config_digest=dg(m + "-config"),
            blobs=[
                Descriptor("application/vnd.docker.container.image.v1+json", dg(m + "-config"), 10),
                Descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", dg(m + "-layer"), 1000),
            ],
        )
    return RepoInventory(
        name=name,
        tags={t: dg(f"{name}:{t}") for t in tags},
        manifests=mans,
        push_times={t: NOW - timedelta(hours=h) for t, h in tags.items()},
        untagged=[],
    )


def inventory(*repos: RepoInventory, source: str = "filesystem") -> Inventory:
    return Inventory(
        registry="local-registry",
        scanned_at=NOW,
        repositories={r.name: r for r in repos},
        push_time_source=source,
    )


def ctx_for(tmp_path, **expire) -> RunContext:
    doc = {
        "mirrorRepositories": [{"name": "local-registry", "type": "local", "url": "http://127.0.0.1:5000"}],
        "tiers": TIERS,
        "expire": {"registry": "local-registry", **expire},
        "reports": {"directory": str(tmp_path / "reports")},
        "cacheDir": str(tmp_path / "cache"),
    }
    p = tmp_path / "regkeeper.yaml"
    p.write_text(yaml.safe_dump(doc))
    return RunContext.load(p)


NO_KUBE = prune.KubeState(None, ["no kubernetes section in the config"])


def test_ttl_repo_cap_exempt_but_business_and_registry_caps_apply(tmp_path):
    ctx = ctx_for(tmp_path)
    inv = inventory(
        repo("tmp/mixed", {"a": 100, "b": 90, "fresh": 1}),  # 2/3 by ttl
        repo("team-a/svc", {"v1": 24 * 60, "v2": 24 * 50, "v3": 24 * 40}),  # 2/3 by keepLast 1
        repo("library/base", {str(i): 24 * 999 for i in range(6)}),
    )
    p = prune.expire_plan(ctx, "local-registry", inv, NO_KUBE, now=NOW)
    # the business repository loses 2 of 3 by a count/age rule: the per-repository cap trips;
    # the temp repository losing 2 of 3 by its TTL is exempt; registry-wide 4/12 is fine
    assert p.cap_tripped == [CapBreach("team-a/svc", 2, 3)]
    assert p.cap_exempt == [CapBreach("tmp/mixed", 2, 3)]
    assert prune.check_cap(p, force=False) and "team-a/svc" in prune.check_cap(p, force=False)
    assert prune.check_cap(p, force=True) is None


def test_registry_wide_cap_still_applies_to_ttl_tiers(tmp_path):
    inv = inventory(
        repo("tmp/a", {"x": 100, "y": 100}),
        repo("ci/b", {"z": 100, "fresh": 1}),
        repo("library/base", {"1": 5000}),
    )
    p = prune.expire_plan(ctx_for(tmp_path, maxDeleteFraction=0.5), "local-registry", inv, NO_KUBE, now=NOW)
    assert p.repositories_to_remove == ["tmp/a"]
    assert p.cap_tripped == [CapBreach(REGISTRY_SCOPE, 3, 5)]  # 60% of all tags
    assert {c.scope for c in p.cap_exempt} == {"tmp/a"}  # ci/b is 1/2: not over
    why = prune.check_cap(p, force=False)
    assert "<registry>: 3/5" in why and "nothing was deleted" in why


def test_default_tier_applies_to_unmatched_repositories(tmp_path):
    inv = inventory(repo("misc/thing", {"old": 100, "new": 1}))
    none = prune.expire_plan(ctx_for(tmp_path), "local-registry", inv, NO_KUBE, now=NOW)
    assert {t.rule for t in none.tags} == {"none"} and not none.deleted_tags()
    dflt = prune.expire_plan(ctx_for(tmp_path, defaultTier="temp"), "local-registry", inv, NO_KUBE, now=NOW)
    by = {t.tag: t for t in dflt.tags}
    assert by["old"].action == "delete" and by["old"].rule == "tier:temp (default)"
    assert by["new"].action == "keep"


def test_report_names_source_left_behind_and_in_use(tmp_path):
    class InUse:
        def is_protected(self, repo, tag, digest):
            return ["ci/Deployment/e2e"] if (repo, tag) == ("tmp/inuse", "e2e") else []

    inv = inventory(repo("tmp/gone", {"a": 100}), repo("tmp/inuse", {"e2e": 100}), source="none")
    # without storage the inventory has no push times: ages come from `created`
    for r in inv.repositories.values():
        for t, d in r.tags.items():
            r.manifests[d].created, r.manifests[d].created_source = r.push_times[t], "config"
        r.push_times = {}
    p = prune.expire_plan(ctx_for(tmp_path), "local-registry", inv, prune.KubeState(InUse(), []), now=NOW)
    assert {t.age_source for t in p.tags} == {"created:config"}
    assert p.repositories_to_remove == ["tmp/gone"]
    deleted = DeleteResult(deleted=[("tmp/gone", d) for _, d in p.manifests_to_delete()])
    rep = prune.build_report(
        "expire", "local-registry", p, inv=inv, deleted=deleted, reclaimed=ReclaimResult(mode="none")
    )
    assert rep.status == "ok"
    assert rep.summary["push time source"] == "image config created (no storage access)"
    assert rep.summary["expired but in use"] == 1 and rep.summary["repositories to remove"] == 1
    assert any(n.startswith("expired but in use: tmp/inuse:e2e (ci/Deployment/e2e)") for n in rep.notes)
    assert any("left behind" in n and "tmp/gone" in n for n in rep.notes)
    rows = {(r["repository"], r["tag"]): r for r in rep.tables[0].rows}
    assert rows[("tmp/inuse", "e2e")]["overridden"] == "expired: older than ttl 3d"
    assert rows[("tmp/gone", "a")]["rule"] == "tier:temp"

    # with storage the emptied repository is removed in the reclaim window: no left-behind note
    ok = prune.build_report(
        "expire",
        "local-registry",
        p,
        inv=inv,
        deleted=deleted,
        reclaimed=ReclaimResult(mode="command", ran=True, repositories_removed=["tmp/gone"]),
    )
    assert not any("left behind" in n for n in ok.notes)
    assert ok.summary["repositories removed"] == ["tmp/gone"]
