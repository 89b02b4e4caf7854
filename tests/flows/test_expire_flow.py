"""expire end to end on a real registry: tiers (base / business / temp 72h), whole temp
repositories removed from storage in the reclamation window, Kubernetes in-use protection,
push times from tag link mtimes (set here with os.utime) or, without storage access, from the
image config's ``created``; the dry run reports exactly what the real run then does."""

import csv
import datetime as dt
import os
import random
from pathlib import Path

import pytest

from regkeeper.errors import RefusedError
from tests.support import images
from tests.support.kubeapi import FAKE_TOKEN, KubeApiServer, write_kubeconfig
from tests.support.rkconfig import RegistryControl, registry_entry, write_config

NOW = dt.datetime.now(dt.UTC)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
FRESH = NOW - 2 * H
OLD = NOW - 90 * D

TIERS = [
    {"name": "base", "match": ["library/**", "base/**"], "keep": "forever"},
    {"name": "business", "match": ["team-*/**"], "keepLast": 3, "keepDays": 30},
    {"name": "temp", "match": ["tmp/**", "ci/**"], "ttl": "72h", "deleteRepository": True},
]
DECISION_KEY = ("repository", "tag", "digest", "action", "reason", "rule")


def pushed_at(reg, repo: str, tags: dict[str, dt.datetime]) -> None:
    """Set the push time the registry's storage records for each tag (its link file mtime)."""
    for tag, when in tags.items():
        link = (
            Path(reg.root)
            / "docker/registry/v2/repositories"
            / repo
            / "_manifests/tags"
            / tag
            / "current/link"
        )
        t = when.timestamp()
        os.utime(link, (t, t))


def layer(seed: int, n: int = 3000) -> bytes:
    return random.Random(seed).randbytes(n)


def state(reg) -> dict[str, dict[str, str]]:
    """repository -> {tag: digest}, as the registry answers over HTTP."""
    return {
        r: {t: images.head_manifest(reg.url, r, t) for t in images.list_tags(reg.url, r)}
        for r in images.catalog(reg.url)
    }


def blob_bytes(reg) -> int:
    """Bytes of blob data in the registry's storage (what garbage-collect frees)."""
    root = Path(reg.root) / "docker/registry/v2/blobs"
    return sum(p.stat().st_size for p in root.rglob("data") if p.is_file())


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def deployment(image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "e2e-env", "namespace": "ci"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "e2e"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


@pytest.fixture
def tiered(registry_factory, tmp_path):
    """A registry with every tier; push times set on the tag links, `created` set to the
    opposite where it matters so only the storage push time can explain a decision."""
    reg = registry_factory()
    u = reg.url
    d = {}
    # temp, fully expired (created says fresh: only the mtime expires them)
    d["a1"] = images.push_image(u, "tmp/old-a", "build-1", created=FRESH, layers=[layer(1)])
    d["a2"] = images.push_image(u, "tmp/old-a", "build-2", created=FRESH, layers=[layer(2)])
    d["a_idx"] = images.push_index(u, "tmp/old-a", "multi", created=FRESH)
    pushed_at(reg, "tmp/old-a", {"build-1": NOW - 4 * D, "build-2": NOW - 80 * H, "multi": NOW - 5 * D})
    d["b1"] = images.push_image(u, "ci/old-b", "pr-7", created=FRESH, layers=[layer(3)])
    pushed_at(reg, "ci/old-b", {"pr-7": NOW - 5 * D})
    # temp, two expired + one fresh tag (whose created is 90 days old: the push time wins)
    d["m1"] = images.push_image(u, "tmp/mixed", "old-1", created=FRESH, layers=[layer(4)])
    d["m2"] = images.push_image(u, "tmp/mixed", "old-2", created=FRESH, layers=[layer(5)])
    d["m3"] = images.push_image(u, "tmp/mixed", "fresh", created=OLD, layers=[layer(6)])
    pushed_at(reg, "tmp/mixed", {"old-1": NOW - 4 * D, "old-2": NOW - 73 * H, "fresh": NOW - 1 * H})
    # temp, expired but a Deployment runs it
    d["u1"] = images.push_image(u, "tmp/inuse", "e2e", created=FRESH, layers=[layer(7)])
    pushed_at(reg, "tmp/inuse", {"e2e": NOW - 4 * D})
    # business: keepLast 3 + keepDays 30 -> v6 v5 v4 newest, v3 younger than 30d, v2 v1 go
    ages = {"v1": 50, "v2": 40, "v3": 20, "v4": 10, "v5": 2, "v6": 1}
    for i, (t, _days) in enumerate(ages.items()):
        d[t] = images.push_image(u, "team-a/svc", t, created=FRESH, layers=[layer(10 + i)])
    pushed_at(reg, "team-a/svc", {t: NOW - days * D for t, days in ages.items()})
    # base: keep forever, very old
    d["base1"] = images.push_image(u, "library/base", "1.0", created=OLD, layers=[layer(20)])
    d["base2"] = images.push_image(u, "library/base", "2.0", created=OLD, layers=[layer(21)])
    pushed_at(reg, "library/base", {"1.0": NOW - 1000 * D, "2.0": NOW - 900 * D})
    # no tier matches: the default (none) does nothing
    d["x"] = images.push_image(u, "other/misc", "x", created=OLD, layers=[layer(22)])
    pushed_at(reg, "other/misc", {"x": NOW - 400 * D})

    api = KubeApiServer(
        {
            "deployments": [deployment(f"{reg.host}/tmp/inuse:e2e")],
            "pods": [],
            "statefulsets": [],
            "daemonsets": [],
            "replicasets": [],
            "jobs": [],
            "cronjobs": [],
        }
    )
    api.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": api})
    ctl = RegistryControl(reg)
    sections = dict(
        tiers=TIERS, kubernetes={"kubeconfig": str(kubeconfig), "contexts": ["prod"], "failClosed": True}
    )
    entry = registry_entry(reg, reclaim=ctl.reclaim_config())
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [entry],
        expire={"registry": "local-registry", "maxDeleteFraction": 0.5},
        **sections,
    )
    tight = tmp_path / "tight"
    tight.mkdir()
    cfg_tight = write_config(
        tight / "regkeeper.yaml",
        [entry],
        expire={"registry": "local-registry", "maxDeleteFraction": 0.4},
        **sections,
    )
    yield reg, d, cfg, cfg_tight, api, ctl
    ctl.stop()
    api.stop()


def test_expire_refuses_when_kubernetes_unreadable_or_registry_cap_exceeded(tiered):
    from flows.expire import expire

    reg, d, cfg, cfg_tight, api, ctl = tiered
    before = state(reg)

    api.fail("deployments", 403)  # permanent: RBAC forbids listing
    with pytest.raises(RefusedError) as ei:
        expire(config_path=str(cfg))
    assert "prod" in str(ei.value) and "403" in str(ei.value) and "nothing" in str(ei.value)
    assert state(reg) == before and ctl.calls == []
    api.clear_faults()

    # 8 of 17 tags (47%) would go: over a 40% cap registry-wide. The ttl repositories are exempt
    # from the per-repository check (tmp/mixed loses 2 of 3), but not from the registry total.
    with pytest.raises(RefusedError) as ei:
        expire(config_path=str(cfg_tight))
    assert "blast-radius cap" in str(ei.value) and "<registry>: 8/17" in str(ei.value)
    assert "tmp/mixed" not in str(ei.value) and "team-a/svc" not in str(ei.value)
    assert state(reg) == before and ctl.calls == []
    reps = sorted((cfg_tight.parent / "reports" / "expire").glob("*.json"))
    assert reps, "a refused run still publishes its report"
    text = reps[-1].read_text()
    assert '"refused"' in text and "tmp/mixed: 2/3" in text

    # force overrides the cap (the same deletes as the normal run below)
    res = expire(config_path=str(cfg_tight), force=True)
    assert res["status"] == "ok", res["notes"]
    assert "tmp/old-a" not in images.catalog(reg.url)
    assert sorted(images.list_tags(reg.url, "tmp/mixed")) == ["fresh"]


def test_expire_tiers_end_to_end(tiered):
    from flows.expire import expire

    reg, d, cfg, cfg_tight, api, ctl = tiered
    before = state(reg)
    assert {"tmp/old-a", "ci/old-b", "tmp/mixed"} <= set(before)

    # ---- dry run: reports the plan, changes nothing
    dry = expire(config_path=str(cfg), dry_run=True)
    assert dry["status"] == "dry-run"
    assert state(reg) == before and ctl.calls == []
    dry_rows = read_csv(dry["files"]["csv"])  # the first table: per-tag decisions
    dry_repos = read_csv(dry["files"]["csv:repositories"])
    dry_mans = read_csv(dry["files"]["csv:manifests"])
    dec = {(r["repository"], r["tag"]): r for r in dry_rows}
    assert len(dec) == sum(len(t) for t in before.values()) == 17

    # every decision names its tier/rule and why; ages come from the tag link mtimes
    assert {r["rule"] for r in dry_rows if r["repository"].startswith(("tmp/", "ci/"))} == {"tier:temp"}
    assert {r["rule"] for r in dry_rows if r["repository"] == "team-a/svc"} == {"tier:business"}
    assert {r["rule"] for r in dry_rows if r["repository"] == "library/base"} == {"tier:base"}
    assert dec[("other/misc", "x")]["rule"] == "none" and dec[("other/misc", "x")]["action"] == "keep"
    assert {r["age_source"] for r in dry_rows} == {"push:filesystem"}
    assert float(dec[("tmp/mixed", "old-2")]["age_days"]) == pytest.approx(73 / 24, abs=0.01)
    assert dec[("tmp/mixed", "old-1")]["reason"] == "expired: older than ttl 3d"
    assert dec[("tmp/mixed", "fresh")]["action"] == "keep"  # created 90d ago: ignored
    assert dec[("tmp/mixed", "fresh")]["reason"] == "younger than ttl 3d"
    assert dec[("tmp/inuse", "e2e")]["action"] == "keep" and dec[("tmp/inuse", "e2e")]["reason"] == "in use"
    assert "Deployment" in dec[("tmp/inuse", "e2e")]["in_use"]
    assert dec[("tmp/inuse", "e2e")]["overridden"] == "expired: older than ttl 3d"
    assert [dec[("team-a/svc", f"v{i}")]["action"] for i in range(1, 7)] == [
        "delete",
        "delete",
        "keep",
        "keep",
        "keep",
        "keep",
    ]
    assert dec[("team-a/svc", "v3")]["reason"] == "younger than 30d"
    assert dec[("team-a/svc", "v4")]["reason"] == "among newest 3"
    assert dec[("team-a/svc", "v2")]["reason"] == "older than 30d, beyond newest 3"
    assert all(
        r["action"] == "keep" and r["reason"] == "keep forever"
        for r in dry_rows
        if r["repository"] == "library/base"
    )
    s = dry["summary"]
    assert s["expired but in use"] == 1 and s["repositories to remove"] == 2
    assert s["push time source"].startswith("storage: filesystem")
    assert "cap tripped" not in s
    assert any("tmp/mixed: 2/3" in n and "per-repository cap not applied" in n for n in dry["notes"])
    assert any(n.startswith("expired but in use: tmp/inuse:e2e") for n in dry["notes"])
    assert {r["repository"] for r in dry_repos if r["remove_repository"] == "True"} == {
        "tmp/old-a",
        "ci/old-b",
    }
    planned_tags = {(r["repository"], r["tag"], r["digest"]) for r in dry_rows if r["action"] == "delete"}
    planned_mans = {(r["repository"], r["digest"]) for r in dry_mans if r["action"] == "delete"}
    kept_mans = {(r["repository"], r["digest"]) for r in dry_mans if r["action"] == "keep"}
    # the index's untagged children go with it
    assert {("tmp/old-a", c.digest) for c in d["a_idx"].children} <= planned_mans
    preview = s["bytes freed (preview)"]

    # ---- the real run
    blobs_before = blob_bytes(reg)
    res = expire(config_path=str(cfg))
    assert res["status"] == "ok", res["notes"]
    after = state(reg)

    # temp repositories expired whole are gone from _catalog (removed from storage in the
    # read-only window, then garbage-collected)
    assert "tmp/old-a" not in after and "ci/old-b" not in after
    for repo in ("tmp/old-a", "ci/old-b"):
        assert not (Path(reg.root) / "docker/registry/v2/repositories" / repo).exists()
    assert not (Path(reg.root) / "docker/registry/v2/repositories/ci").exists()  # empty namespace too
    assert ctl.calls == ["readonly", "readwrite"]
    assert sorted(res["summary"]["repositories removed"]) == ["ci/old-b", "tmp/old-a"]
    assert not any("left behind" in n for n in res["notes"])
    for lg in d["a1"].layer_digests + d["b1"].layer_digests:
        assert not reg.blob_path(lg).exists(), lg
    # one fresh tag keeps its temp repository; the in-use one is kept and reported
    assert after["tmp/mixed"] == {"fresh": d["m3"].digest}
    assert after["tmp/inuse"] == {"e2e": d["u1"].digest}
    assert res["summary"]["expired but in use"] == 1
    # business keepLast/keepDays honoured; base and unmatched untouched
    assert sorted(after["team-a/svc"]) == ["v3", "v4", "v5", "v6"]
    assert after["library/base"] == before["library/base"]
    assert after["other/misc"] == before["other/misc"]
    for img in (d["base1"], d["base2"], d["x"], d["m3"], d["v3"]):
        for lg in img.layer_digests:
            assert reg.blob_path(lg).exists(), lg
    assert res["summary"]["verify problems"] == 0 and res["summary"]["verified blobs"] > 0

    # ---- the dry run said exactly what the real run did
    gone_tags = {
        (r, t, dg) for r, tags in before.items() for t, dg in tags.items() if after.get(r, {}).get(t) != dg
    }
    assert gone_tags == planned_tags
    assert set(after) == set(before) - {"tmp/old-a", "ci/old-b"}
    for repo, dg in planned_mans:
        if repo in after:
            assert images.head_manifest(reg.url, repo, dg) is None, (repo, dg)
    for repo, dg in kept_mans:
        assert images.head_manifest(reg.url, repo, dg) == dg, (repo, dg)
    assert res["summary"]["deletes ok"] == len(planned_mans) and res["summary"]["deletes failed"] == 0
    assert res["summary"]["manifests deleted"] == len(planned_mans)
    real_rows = read_csv(res["files"]["csv"])
    assert sorted(tuple(r[k] for k in DECISION_KEY) for r in real_rows) == sorted(
        tuple(r[k] for k in DECISION_KEY) for r in dry_rows
    )
    # the preview is exact: it is the blob data (layers, configs, manifests) the run freed
    assert blob_bytes(reg) == blobs_before - preview
    assert res["summary"]["bytes freed (measured)"] >= preview  # + links and directories

    # a second run has nothing left to do
    again = expire(config_path=str(cfg), dry_run=True)
    assert again["summary"]["tags to delete"] == 0 and again["summary"]["expired but in use"] == 1

    text = "".join(p.read_text() for p in (Path(cfg).parent / "reports").rglob("*") if p.is_file())
    assert FAKE_TOKEN not in text


def test_expire_without_storage_ages_from_created_and_reports_left_behind(registry_factory, tmp_path):
    """No storage access: ages come from the image config's `created` (the link mtimes, set to
    say the opposite, are not visible), and an emptied temp repository stays in `_catalog` and
    is reported as left behind."""
    from flows.expire import expire

    reg = registry_factory()
    u = reg.url
    gone1 = images.push_image(u, "tmp/gone", "a", created=NOW - 5 * D, layers=[layer(31)])
    gone2 = images.push_image(u, "tmp/gone", "b", created=NOW - 4 * D, layers=[layer(32)])
    pushed_at(reg, "tmp/gone", {"a": NOW - H, "b": NOW - H})  # storage says fresh
    keep = images.push_image(u, "tmp/keep", "new", created=NOW - 3 * H, layers=[layer(33)])
    old_keep = images.push_image(u, "tmp/keep", "old", created=NOW - 10 * D, layers=[layer(34)])
    pushed_at(reg, "tmp/keep", {"new": NOW - 30 * D, "old": NOW - H})  # storage says the opposite
    base = images.push_image(u, "library/base", "1", created=OLD, layers=[layer(35)])
    for alias in ("1.0", "stable"):  # 3 of 7 tags go: under the 50% cap
        images.tag_existing(u, "library/base", alias, base.digest)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, storage=False)],
        tiers=TIERS,
        expire={"registry": "local-registry"},
    )
    before = state(reg)

    dry = expire(config_path=str(cfg), dry_run=True)
    assert state(reg) == before
    rows = read_csv(dry["files"]["csv"])
    dec = {(r["repository"], r["tag"]): r for r in rows}
    assert {r["age_source"] for r in rows} == {"created:config"}
    assert dry["summary"]["push time source"] == "image config created (no storage access)"
    assert float(dec[("tmp/gone", "a")]["age_days"]) == pytest.approx(5, abs=0.01)
    planned = {(r["repository"], r["tag"], r["digest"]) for r in rows if r["action"] == "delete"}
    assert planned == {
        ("tmp/gone", "a", gone1.digest),
        ("tmp/gone", "b", gone2.digest),
        ("tmp/keep", "old", old_keep.digest),
    }
    assert dry["summary"]["repositories to remove"] == 1
    assert any("no kubernetes section" in n for n in dry["notes"])

    res = expire(config_path=str(cfg))
    assert res["status"] == "ok", res["notes"]
    after = state(reg)
    gone = {
        (r, t, dg) for r, tags in before.items() for t, dg in tags.items() if after.get(r, {}).get(t) != dg
    }
    assert gone == planned
    assert after["tmp/keep"] == {"new": keep.digest}
    assert after["library/base"] == {"1": base.digest, "1.0": base.digest, "stable": base.digest}
    # the empty repository is still listed (nothing could remove it) and the report says so
    assert "tmp/gone" in images.catalog(reg.url) and after["tmp/gone"] == {}
    assert "repositories removed" not in res["summary"]
    assert any("left behind" in n and "tmp/gone" in n for n in res["notes"])
