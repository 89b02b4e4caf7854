"""Referrers through gc and expire on every registry of the matrix, made by the real tools
(issue 12): oras attach (an SBOM by the API where the registry has one, an attestation through
the sha256-<hex> fallback index everywhere), cosign's default signature (a sha256-<hex>.sig
tag) and its OCI 1.1 one (a referrer), and a tagged referrer (a manifest with ``subject`` tagged ``sbom-1.0``, what oras-py
writes on a registry without the API).

A 120-day-old image goes with ALL its referrers (the API answers an empty index for it, no
fallback entry or tag, no .sig tag); the kept image keeps all of its own and ``cosign verify``
still passes (both kinds); the young tagged SBOM neither keeps its old subject alive nor takes the keepLast
slot. ``regkeeper inventory --format json`` links every referrer to its subject, and the API /
fallback ones equal ``regctl artifact tree``.

The registries run without a ``storage`` section here (the same on all four; the memory
registry has none): ages come from the image configs' ``created``. Reclaim does not apply (no
garbage-collect run here; the referrers-api registry has none at all)."""

import datetime as dt
import json

import pytest
import requests

from regkeeper import prune
from regkeeper.context import RunContext
from regkeeper.inventory import scan
from tests.integration.test_cli import rk
from tests.support import images
from tests.support.ocitools import digest_tag
from tests.support.rkconfig import registry_entry, write_config

SPDX = "application/spdx+json"
INTOTO = "application/vnd.in-toto+json"
TAGGED = "application/vnd.example.sbom.v1+json"
OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
MID = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
REG = "local-registry"


def _file(name: str, media: str) -> dict[str, tuple[bytes, str]]:
    return {f"{name}.json": (json.dumps({"name": name}).encode(), media)}


def _decorate(reg, oras, cosign, repo: str, img) -> dict[str, str]:
    """Every kind of referrer on ``img``: name -> digest (the .sig tag's digest included)."""
    ref = reg.ref(repo, img.digest)
    out = {
        "sbom": oras.attach(ref, SPDX, _file("sbom", SPDX))["digest"],  # API where there is one
        "att": oras.attach(ref, INTOTO, _file("att", INTOTO), mode="tag")["digest"],  # fallback
    }
    cosign.sign(ref, mode="legacy")
    out["sig"] = images.head_manifest(reg.url, repo, digest_tag(img.digest) + ".sig")
    before = _referrer_digests(reg, oras, ref)
    cosign.sign(ref, mode="oci-1-1")  # a referrer: by the API, else in the fallback index
    [out["sig11"]] = _referrer_digests(reg, oras, ref) - before
    return out


def _referrer_digests(reg, oras, ref: str) -> set[str]:
    return {d for refs in oras.referrers(oras.discover(ref)).values() for d, _ in refs}


@pytest.fixture
def referred(registry_matrix, oras, cosign, unique_repo, tmp_path):
    reg, repo = registry_matrix, unique_repo
    old = images.push_image(reg.url, repo, "1.0", media="oci", created=OLD, seed=repo + "old")
    new = images.push_image(reg.url, repo, "2.0", media="oci", created=MID, seed=repo + "new")
    refs = {"old": _decorate(reg, oras, cosign, repo, old), "new": _decorate(reg, oras, cosign, repo, new)}
    # the young tagged referrer of the old image, no fallback entry (oras-py without the API)
    tagged = images.push_referrer(
        reg.url, repo, old, artifact_type=TAGGED, tag="sbom-1.0", fallback_tag=False
    )
    refs["old"]["tagged"] = tagged.digest
    return reg, repo, {"old": old.digest, "new": new.digest}, refs


def _config(tmp_path, reg, job: str):
    if job == "gc":
        sections = {"gc": {"days": 30, "keepLast": 1, "protect": [], "maxDeleteFraction": 1.0}}
    else:
        tiers = [{"name": "business", "match": ["t/**"], "keepLast": 1, "keepDays": 30}]
        sections = {"tiers": tiers, "expire": {"maxDeleteFraction": 1.0}}
    return write_config(tmp_path / "regkeeper.yaml", [registry_entry(reg, REG, storage=False)], **sections)


def _run(ctx, job: str):
    """The core pipeline as the flow runs it: scan, plan, delete (with the re-check), verify,
    report."""
    client = ctx.client(REG)
    inv = scan(client, storage=ctx.storage(REG))
    make = prune.gc_plan if job == "gc" else prune.expire_plan
    plan = make(ctx, REG, inv, prune.KubeState(None))
    deleted = prune.delete_batch(
        ctx, REG, plan.manifests_to_delete(), inv, recheck=prune.planned_tag_deletes(plan), plan=plan
    )
    verified = prune.run_verify(ctx, REG, inv, plan, everything=False, deleted=deleted)
    rep = prune.build_report(job, REG, plan, inv=inv, deleted=deleted, verified=verified)
    return inv, plan, deleted, rep


def _api_referrers(reg, repo, digest) -> list:
    r = requests.get(f"{reg.url}/v2/{repo}/referrers/{digest}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["manifests"]


@pytest.mark.parametrize("job", ["gc", "expire"])
def test_referrers_live_and_die_with_their_subject(referred, job, cosign, regctl, tmp_path):
    reg, repo, img, refs = referred
    ctx = RunContext.load(_config(tmp_path, reg, job))
    inv, plan, deleted, rep = _run(ctx, job)
    assert not deleted.failed and not deleted.skipped, (deleted.failed, deleted.skipped)
    assert rep.status == "ok", rep.notes

    tags = {t.tag: t for t in plan.tags}
    assert tags["2.0"].action == "keep" and tags["2.0"].reason == "among newest 1"  # ranks images only
    assert tags["1.0"].action == "delete"
    assert tags["sbom-1.0"].action == "delete" and tags["sbom-1.0"].reason.startswith("referrer of deleted")

    # the old image and every referrer of it are gone: manifests, fallback index tag, .sig tag
    listed = images.list_tags(reg.url, repo)
    left = {t for t in listed if images.head_manifest(reg.url, repo, t) is not None}
    assert left == {"2.0", digest_tag(img["new"]), digest_tag(img["new"]) + ".sig"}
    if reg.name != "dist28-s3":
        assert set(listed) == left
    # distribution 2.8 on S3 may go on listing a tag whose manifest was deleted by digest for a
    # moment: the tag no longer resolves (HEAD 404) and the next scan drops it
    assert images.head_manifest(reg.url, repo, img["old"]) is None
    for name, digest in refs["old"].items():
        assert images.head_manifest(reg.url, repo, digest) is None, name
    if reg.capabilities.referrers_api:
        assert _api_referrers(reg, repo, img["old"]) == []
    # the kept image keeps all of its own; its signature still verifies
    for name, digest in refs["new"].items():
        assert images.head_manifest(reg.url, repo, digest) == digest, name
    subject = reg.ref(repo, img["new"])
    for mode in ("legacy", "oci-1-1"):
        payloads = cosign.verify(subject, mode=mode)
        assert [p["critical"]["image"]["docker-manifest-digest"] for p in payloads] == [img["new"]]
    regctl.plain_http(reg.host)
    tree = {d for d, _ in regctl.tree(subject).referrer_map().get(img["new"], [])}
    assert tree == {refs["new"]["sbom"], refs["new"]["att"], refs["new"]["sig11"]}

    # the report: referrers counted apart from images, the mode named, one row per referrer
    mode = "api" if reg.capabilities.referrers_api else "tag-schema"
    assert rep.summary["referrers"] == mode
    rows = {(r["subject"], r["digest"]): r for r in rep.table("referrers").rows}
    print(img, refs, *rows.values(), sep="\n")
    assert {d for (s, d) in rows if s == img["old"]} == set(refs["old"].values())
    # the API lists the tagged referrer too; only its subject field finds it elsewhere
    tagged_by = "api" if reg.capabilities.referrers_api else "subject-field"
    assert rows[(img["old"], refs["old"]["tagged"])]["discovered_by"] == tagged_by
    assert rows[(img["old"], refs["old"]["sig"])]["discovered_by"] == "cosign-tag"
    assert rows[(img["new"], refs["new"]["att"])]["discovered_by"] == mode
    assert rep.summary["referrers deleted"] == 5 and rep.summary["referrers kept"] == 4


def test_inventory_json_links_every_referrer_to_its_subject(referred, regctl, tmp_path):
    """``regkeeper inventory --format json``: every referrer names its subject, type and how it
    was found; each image lists its referrers, and those found by the API or the fallback index
    are exactly what ``regctl artifact tree`` shows (regctl sees neither cosign's .sig tag nor,
    without the API, a referrer that no fallback index lists)."""
    reg, repo, img, refs = referred
    cfg = _config(tmp_path, reg, "gc")
    out = rk("inventory", "--config", str(cfg), "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    mode = "api" if reg.capabilities.referrers_api else "tag-schema"
    assert doc["referrers_mode"] == mode and f"referrers: {mode}" in out.stderr
    manifests = doc["repositories"][repo]["manifests"]
    regctl.plain_http(reg.host)
    for name in ("old", "new"):
        subject = img[name]
        listed = {x["digest"]: x for x in manifests[subject]["referrers"]}
        assert set(listed) == set(refs[name].values()), name
        for digest in refs[name].values():
            m = manifests[digest]
            assert m["subject"] == subject and m["discovered_by"] == listed[digest]["discovered_by"]
            assert m["referrer_type"], digest
        assert listed[refs[name]["sig"]]["discovered_by"] == "cosign-tag"
        tree = {d for d, _ in regctl.tree(reg.ref(repo, subject)).referrer_map().get(subject, [])}
        assert tree == {d for d, x in listed.items() if x["discovered_by"] in ("api", "tag-schema")}
        assert manifests[subject]["subject"] is None and manifests[subject]["referrer_type"] is None
    assert manifests[refs["old"]["tagged"]]["discovered_by"] == ("api" if mode == "api" else "subject-field")
    # the fallback index is bookkeeping, linked to its subject but not a referrer
    idx = manifests[img["new"]]["referrers_index"]
    assert idx and manifests[idx]["referrer_type"] == "referrers-index"
    csv = rk("inventory", "--config", str(cfg), "--format", "csv")
    sig_row = next(ln for ln in csv.stdout.splitlines() if f"{digest_tag(img['new'])}.sig," in ln)
    assert sig_row.count(img["new"]) == 2 and ",cosign-tag" in sig_row  # signature_of and subject


def test_fallback_index_loses_an_entry_that_is_gone(referred, regctl, tmp_path):
    """Someone deleted the kept image's attestation behind the fallback index's back: gc re-PUTs
    the sha256-<hex> index without the dangling entry (same tag), and regctl sees the rest."""
    reg, repo, img, refs = referred
    assert images.delete_manifest(reg.url, repo, refs["new"]["att"]) == 202
    before = images.head_manifest(reg.url, repo, digest_tag(img["new"]))
    ctx = RunContext.load(_config(tmp_path, reg, "gc"))
    inv, plan, deleted, rep = _run(ctx, "gc")
    assert not deleted.failed, deleted.failed
    [(r, subject, new)] = deleted.fallback_updates
    assert (r, subject) == (repo, img["new"])
    if reg.capabilities.referrers_api:  # the SBOM went through the API: the index held only the
        assert new is None  # attestation, so it was emptied and deleted
        assert images.head_manifest(reg.url, repo, digest_tag(img["new"])) is None
    else:
        assert new not in (None, before)
        assert images.head_manifest(reg.url, repo, digest_tag(img["new"])) == new
    assert rep.summary["fallback indexes repaired"] == 1
    regctl.plain_http(reg.host)
    tree = {d for d, _ in regctl.tree(reg.ref(repo, img["new"])).referrer_map().get(img["new"], [])}
    assert tree == {refs["new"]["sbom"], refs["new"]["sig11"]}


def test_fallback_index_repaired_where_nothing_is_deleted(registry, unique_repo, tmp_path):
    """A repository where the plan deletes nothing but a fallback index lists a referrer that is
    gone: the flow hands it to the delete path (``needs_repair``), which re-PUTs the index."""
    u, repo = registry.url, unique_repo
    img = images.push_image(u, repo, "v1", media="oci", created=MID, seed=repo)
    keep = images.push_referrer(u, repo, img, artifact_type=SPDX)
    lost = images.push_referrer(u, repo, img, artifact_type=INTOTO)
    assert images.delete_manifest(u, repo, lost.digest) == 202
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry, REG, storage=False)],
        gc={"days": 30, "keepLast": 1, "include": [repo]},
    )
    ctx = RunContext.load(cfg)
    inv = scan(ctx.client(REG), repositories=[repo])
    plan = prune.gc_plan(ctx, REG, inv, prune.KubeState(None))
    assert plan.manifests_to_delete() == [] and prune.needs_repair(inv) == [repo]
    res = prune.delete_batch(ctx, REG, [], inv, recheck={repo: set()}, plan=plan)
    [(r, subject, new)] = res.fallback_updates
    assert (r, subject) == (repo, img.digest)
    idx = images.get_manifest(u, repo, digest_tag(img.digest))[0]
    assert [m["digest"] for m in json.loads(idx)["manifests"]] == [keep.digest]


def test_orphan_referrers_removed_by_gc_with_storage(registry, cosign, unique_repo, tmp_path):
    """Someone deleted an image by digest and left its referrers behind: with storage access
    (untagged manifests visible, so the subject is provably gone) gc removes the SBOM, the
    fallback index and the cosign signature, each with the orphan reason, and counts them."""
    u, repo = registry.url, unique_repo
    gone = images.push_image(u, repo, "1.0", media="oci", seed=repo + "gone")
    images.push_image(u, repo, "2.0", media="oci", seed=repo + "kept")
    sbom = images.push_referrer(u, repo, gone, artifact_type=SPDX)
    cosign.sign(f"{registry.host}/{repo}@{gone.digest}", mode="legacy")
    assert images.delete_manifest(u, repo, gone.digest) == 202
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(registry, REG)],
        gc={"days": 30, "keepLast": 5, "include": [repo], "maxDeleteFraction": 1.0, "untaggedGrace": "0s"},
    )
    ctx = RunContext.load(cfg)
    inv, plan, deleted, rep = _run(ctx, "gc")
    assert not deleted.failed, deleted.failed
    why = f"orphan referrer: subject {gone.digest[:19]} is gone"
    t = {x.tag: x for x in plan.tags}
    assert t[digest_tag(gone.digest) + ".sig"].reason == why and t[digest_tag(gone.digest)].reason == why
    assert {m.digest: m.reason for m in plan.deleted_manifests()}[sbom.digest] == why
    assert rep.summary["orphan referrers removed"] == 2  # the SBOM and the signature
    # (the session registry's other repositories are scanned too: their referrers are "kept")
    lead = "Referrers deleted with their subjects: 2, 2 orphans among them (subject gone); kept: "
    assert any(line.startswith(lead) for line in rep.headline), rep.headline
    assert images.list_tags(u, repo) == ["2.0"]
    assert images.head_manifest(u, repo, sbom.digest) is None
