"""gc end to end on a real registry with a recorded Kubernetes API and an adversarial workload."""

import datetime as dt
import json
import os
from pathlib import Path

import pytest
import requests

from regkeeper.errors import RefusedError
from tests.support import images
from tests.support.kubeapi import FAKE_TOKEN, KubeApiServer, write_kubeconfig
from tests.support.rkconfig import RegistryControl, registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
FRESH = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)


def age(reg, repo: str, tags: list[str], when: dt.datetime):
    t = when.timestamp()
    for tag in tags:
        link = (
            Path(reg.root)
            / "docker/registry/v2/repositories"
            / repo
            / "_manifests/tags"
            / tag
            / "current/link"
        )
        os.utime(link, (t, t))


def layer(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def pod(name, ns, containers, init=(), ephemeral=(), statuses=()):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": {
            "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(containers)],
            "initContainers": [{"name": f"i{i}", "image": im} for i, im in enumerate(init)],
            "ephemeralContainers": [{"name": f"e{i}", "image": im} for i, im in enumerate(ephemeral)],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": f"c{i}", "image": im, "imageID": iid, "ready": True, "restartCount": 0}
                for i, (im, iid) in enumerate(statuses)
            ],
        },
    }


def template(containers, init=()):
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(containers)],
            "initContainers": [{"name": f"i{i}", "image": im} for i, im in enumerate(init)],
        },
    }


def kube_objects(host: str, d: dict) -> dict:
    return {
        "deployments": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod"},
                "spec": {
                    "replicas": 2,
                    "template": template([f"{host}/adv/deploy-tag:old1", f"{host}/adv/signed:a"]),
                },
            }
        ],
        "cronjobs": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": "batch"},
                "spec": {
                    "schedule": "0 1 * * *",
                    "jobTemplate": {"spec": {"template": template([f"{host}/adv/cron-digest@{d['cron']}"])}},
                },
            }
        ],
        "statefulsets": [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "db", "namespace": "prod"},
                "spec": {
                    "template": template(
                        ["docker.io/library/postgres:16"], init=[f"{host}/adv/init:initonly"]
                    )
                },
            }
        ],
        "pods": [
            pod(
                "api-1",
                "prod",
                [f"{host}/adv/imageid:dev"],
                statuses=[
                    (f"{host}/adv/imageid:dev", f"docker-pullable://{host}/adv/imageid@{d['imageid']}")
                ],
            )
        ],
        "daemonsets": [],
        "replicasets": [],
        "jobs": [],
    }


@pytest.fixture
def adversarial(registry_factory, tmp_path):
    reg = registry_factory()
    u = reg.url
    d = {}
    big = 40_000
    # adv/deploy-tag: old1 used by a Deployment by tag; old2 unused (deleted); new1 fresh
    d["old1"] = images.push_image(u, "adv/deploy-tag", "old1", created=OLD, layers=[layer(big, 1)]).digest
    d["old2"] = images.push_image(u, "adv/deploy-tag", "old2", created=OLD, layers=[layer(big, 2)]).digest
    d["new1"] = images.push_image(u, "adv/deploy-tag", "new1", created=FRESH, layers=[layer(big, 3)]).digest
    age(reg, "adv/deploy-tag", ["old1", "old2"], OLD)
    # adv/cron-digest: build-1 used by digest from a CronJob; build-2 unused
    d["cron"] = images.push_image(u, "adv/cron-digest", "build-1", created=OLD, layers=[layer(big, 4)]).digest
    d["cron2"] = images.push_image(
        u, "adv/cron-digest", "build-2", created=OLD, layers=[layer(big, 5)]
    ).digest
    age(reg, "adv/cron-digest", ["build-1", "build-2"], OLD)
    # adv/init: only an initContainer uses initonly; other-old unused
    d["init"] = images.push_image(u, "adv/init", "initonly", created=OLD, layers=[layer(big, 6)]).digest
    d["init2"] = images.push_image(u, "adv/init", "other-old", created=OLD, layers=[layer(big, 7)]).digest
    age(reg, "adv/init", ["initonly", "other-old"], OLD)
    # adv/imageid: the pod's tag moved on; the running digest is known only from status.imageID
    d["imageid"] = images.push_image(u, "adv/imageid", "build-7", created=OLD, layers=[layer(big, 8)]).digest
    d["imageid_dev"] = images.push_image(
        u, "adv/imageid", "dev", created=FRESH, layers=[layer(big, 9)]
    ).digest
    age(reg, "adv/imageid", ["build-7"], OLD)
    # adv/multiarch: a fresh index (children untagged: kept) and a stale index (deleted with children)
    cur = images.push_index(u, "adv/multiarch", "current", created=FRESH)
    stale = images.push_index(u, "adv/multiarch", "stale", created=OLD)
    d["cur"], d["cur_children"] = cur.digest, [c.digest for c in cur.children]
    d["stale"], d["stale_children"] = stale.digest, [c.digest for c in stale.children]
    age(reg, "adv/multiarch", ["stale"], OLD)
    # adv/signed: a (used by the Deployment) signed; b (unused) signed
    d["a"] = images.push_image(u, "adv/signed", "a", created=OLD, layers=[layer(big, 10)]).digest
    d["b"] = images.push_image(u, "adv/signed", "b", created=OLD, layers=[layer(big, 11)]).digest
    d["a_sig"] = images.push_signature(u, "adv/signed", d["a"]).digest
    d["b_sig"] = images.push_signature(u, "adv/signed", d["b"]).digest
    age(
        reg,
        "adv/signed",
        ["a", "b", "sha256-" + d["a"].split(":")[1] + ".sig", "sha256-" + d["b"].split(":")[1] + ".sig"],
        OLD,
    )
    # adv/twotags: one digest, two old tags; "latest" is protected
    d["two"] = images.push_image(u, "adv/twotags", "latest", created=OLD, layers=[layer(big, 12)]).digest
    images.tag_existing(u, "adv/twotags", "old-alias", d["two"])
    images.push_image(u, "adv/twotags", "fresh", created=FRESH, layers=[layer(big, 13)])
    age(reg, "adv/twotags", ["latest", "old-alias"], OLD)

    api = KubeApiServer(kube_objects(reg.host, d))
    api.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": api})
    refused_pushes = []

    def push_while_readonly():
        try:
            images.push_image(u, "adv/during-gc", "x", layers=[layer(1000, 99)])
        except Exception as e:  # noqa: BLE001
            refused_pushes.append(str(e))

    ctl = RegistryControl(reg, on_readonly=push_while_readonly)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, reclaim=ctl.reclaim_config())],
        gc={"registry": "local-registry", "days": 30, "keepLast": 0, "protect": ["latest"]},
        kubernetes={"kubeconfig": str(kubeconfig), "contexts": ["prod"], "failClosed": True},
    )
    yield reg, d, cfg, api, ctl, refused_pushes
    ctl.stop()
    api.stop()


def tags(reg, repo):
    return sorted(images.list_tags(reg.url, repo))


def test_gc_adversarial_keeps_everything_in_use(adversarial):
    from flows.gc import gc

    reg, d, cfg, api, ctl, refused = adversarial
    sig = lambda dg: "sha256-" + dg.split(":")[1] + ".sig"  # noqa: E731

    # dry run: reports the plan, changes nothing
    before = {r: tags(reg, r) for r in images.catalog(reg.url)}
    dry = gc(config_path=str(cfg), dry_run=True)
    assert dry["status"] == "dry-run"
    assert {r: tags(reg, r) for r in images.catalog(reg.url)} == before
    # referrers apart from images: the registry's mode, b's signature to go, a's kept
    assert dry["summary"]["referrers"] == "tag-schema"
    assert dry["summary"]["referrers to delete"] == 1 and dry["summary"]["referrers kept"] == 1
    preview = dry["summary"]["bytes freed (preview)"]
    assert preview > 4 * 40_000

    res = gc(config_path=str(cfg))
    assert res["status"] == "ok", res["notes"]
    assert res["summary"]["referrers deleted"] == 1 and res["summary"]["orphan referrers removed"] == 0

    assert tags(reg, "adv/deploy-tag") == ["new1", "old1"]
    assert tags(reg, "adv/cron-digest") == ["build-1"]
    assert tags(reg, "adv/init") == ["initonly"]
    assert tags(reg, "adv/imageid") == ["build-7", "dev"]
    assert tags(reg, "adv/multiarch") == ["current"]
    assert tags(reg, "adv/signed") == sorted(["a", sig(d["a"])])  # b and its .sig went together
    assert tags(reg, "adv/twotags") == ["fresh", "latest", "old-alias"]
    # the kept index's untagged children still resolve; the stale index's children are gone
    for c in d["cur_children"]:
        assert images.head_manifest(reg.url, "adv/multiarch", c) is not None
    for c in d["stale_children"]:
        assert images.head_manifest(reg.url, "adv/multiarch", c) is None
    # expected deletes really happened (by digest)
    for repo, dg in [
        ("adv/deploy-tag", d["old2"]),
        ("adv/cron-digest", d["cron2"]),
        ("adv/init", d["init2"]),
        ("adv/signed", d["b"]),
        ("adv/signed", d["b_sig"]),
        ("adv/multiarch", d["stale"]),
    ]:
        assert images.head_manifest(reg.url, repo, dg) is None, (repo, dg)
    # no orphaned signature anywhere
    for repo in images.catalog(reg.url):
        for t in tags(reg, repo):
            if t.startswith("sha256-") and t.endswith(".sig"):
                subject = "sha256:" + t[len("sha256-") : -len(".sig")]
                assert images.head_manifest(reg.url, repo, subject) is not None, (repo, t)

    # reclamation: read-only window, a push refused during it and no broken image left
    assert ctl.calls == ["readonly", "readwrite"]
    assert refused, "a push during the read-only window must be refused"
    assert "adv/during-gc" not in images.catalog(reg.url) or tags(reg, "adv/during-gc") == []
    measured = res["summary"]["bytes freed (measured)"]
    assert abs(measured - preview) <= 0.05 * preview, (measured, preview)
    # every kept image's manifests and blobs still answer 200
    assert res["summary"]["verify problems"] == 0 and res["summary"]["verified blobs"] > 0
    for repo in images.catalog(reg.url):
        for t in tags(reg, repo):
            raw, mt, dg = images.get_manifest(reg.url, repo, t)
            doc = json.loads(raw)
            for desc in [doc.get("config")] + doc.get("layers", []):
                if desc:
                    r = requests.head(f"{reg.url}/v2/{repo}/blobs/{desc['digest']}", timeout=10)
                    assert r.status_code == 200, (repo, t, desc["digest"])

    # report files: per-tag decision CSV with reasons, and the token never leaks
    rep_dir = Path(cfg).parent / "reports" / "gc"
    csvs = sorted(rep_dir.glob("*.csv"))
    assert csvs
    text = "".join(p.read_text() for p in rep_dir.iterdir())
    assert "in use" in text and "old2" in text
    assert FAKE_TOKEN not in text


def test_gc_fail_closed_when_kubernetes_unreadable(adversarial):
    from flows.gc import gc

    reg, d, cfg, api, ctl, refused = adversarial
    api.fail("pods", 500)
    before = {r: tags(reg, r) for r in images.catalog(reg.url)}
    with pytest.raises(RefusedError) as ei:
        gc(config_path=str(cfg))
    msg = str(ei.value)
    assert "prod" in msg and "500" in msg and "nothing" in msg.lower()
    assert {r: tags(reg, r) for r in images.catalog(reg.url)} == before
    assert ctl.calls == []


def test_gc_cap_refuses_and_force_overrides(adversarial):
    from flows.gc import gc

    reg, d, cfg, api, ctl, refused = adversarial
    before = {r: tags(reg, r) for r in images.catalog(reg.url)}
    with pytest.raises(RefusedError) as ei:
        gc(config_path=str(cfg), days=0, keep_last=0)  # everything unprotected is "old"
    assert "blast-radius cap" in str(ei.value)
    assert {r: tags(reg, r) for r in images.catalog(reg.url)} == before
    res = gc(config_path=str(cfg), days=0, keep_last=0, force=True)
    assert res["status"] == "ok"
    # even forced: in-use, protected and kept-index children survive
    assert "old1" in tags(reg, "adv/deploy-tag")
    assert "latest" in tags(reg, "adv/twotags")
    assert "build-1" in tags(reg, "adv/cron-digest")
    assert "initonly" in tags(reg, "adv/init")
    assert "build-7" in tags(reg, "adv/imageid")
