"""Backup and verified restore against a real distribution registry, with the backup target
on a real ``moto_server`` (S3 API) and on a directory (``file://``): every scenario runs on both.

Ground truth about the registry (tags and digests) is read with the independent test helpers in
tests/support/images.py, not with regkeeper's own client."""

import datetime as dt
import hashlib
import json
import os
import uuid

import pytest

from regkeeper import backup as B
from regkeeper.cache import DigestCache
from regkeeper.config import BackupConfig
from regkeeper.oci import RegistryClient
from tests.support import images

CREATED = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
V = {"verify": False}  # plain http on loopback


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def reg(registry_factory):
    """A registry of its own: these tests delete tags and run garbage-collect."""
    return registry_factory()


class Target:
    """The backup target of one test: a fresh S3 bucket on moto, or a fresh directory."""

    def __init__(self, kind, tmp_path, moto=None):
        self.kind = kind
        self.moto = moto
        if kind == "s3":
            self.bucket = f"bk-{uuid.uuid4().hex[:12]}"
            moto.create_bucket(self.bucket)
            self.url = f"s3://{self.bucket}/meta"
            self.cfg = BackupConfig.model_validate(
                {
                    "target": self.url,
                    "endpoint": moto.endpoint,
                    "region": moto.region,
                    "accessKey": moto.access_key,
                    "secretKey": moto.secret_key,
                }
            )
            self.raw = moto.client()
        else:
            self.root = tmp_path / "backups"
            self.url = f"file://{self.root}"
            self.cfg = BackupConfig.model_validate({"target": self.url})

    def store(self) -> B.ObjectStore:
        return B.open_target(self.url, self.cfg)

    # independent views of what is on the target (boto3 straight to moto / the filesystem)
    def keys(self, prefix="") -> dict[str, bytes]:
        out = {}
        if self.kind == "s3":
            pag = self.raw.get_paginator("list_objects_v2")
            for page in pag.paginate(Bucket=self.bucket, Prefix=f"meta/{prefix}"):
                for o in page.get("Contents", []):
                    body = self.raw.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
                    out[o["Key"][len("meta/") :]] = body
        else:
            for dirpath, _, files in os.walk(self.root):
                for f in files:
                    p = os.path.join(dirpath, f)
                    k = os.path.relpath(p, self.root).replace(os.sep, "/")
                    if k.startswith(prefix):
                        with open(p, "rb") as fh:
                            out[k] = fh.read()
        return out

    def start_counting(self):
        if self.kind == "s3":
            self.moto.clear_request_log()
        else:
            self._before = {k: os.stat(self.root / k).st_mtime_ns for k in self.keys()}

    @property
    def run_overhead(self) -> int:
        """Writes per run besides objects: the index, and on S3 the in-flight marker PUT
        (on a directory the marker file is gone again by the time we look)."""
        return 2 if self.kind == "s3" else 1

    def object_writes(self) -> list[str]:
        """Keys written since start_counting: moto's request log (every PUT it served) / new or
        rewritten files."""
        if self.kind == "s3":
            return sorted(
                r.path[len(f"/{self.bucket}/meta/") :] for r in self.moto.object_puts(self.bucket, "meta/")
            )
        now = {k: os.stat(self.root / k).st_mtime_ns for k in self.keys()}
        return sorted(k for k, t in now.items() if self._before.get(k) != t)


@pytest.fixture(params=["s3", "file"])
def target(request, tmp_path):
    moto = request.getfixturevalue("moto_server") if request.param == "s3" else None
    return Target(request.param, tmp_path, moto)


def client(reg, tmp_path, name="primary", **kw) -> RegistryClient:
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.05)
    return RegistryClient(name, reg.url, verify=False, cache=DigestCache(tmp_path / f"cache-{name}"), **kw)


def truth(reg) -> dict[tuple[str, str], str]:
    """(repository, tag) -> digest, read with the test helpers."""
    out = {}
    for repo in images.catalog(reg.url, **V):
        for tag in images.list_tags(reg.url, repo, **V):
            out[(repo, tag)] = images.head_manifest(reg.url, repo, tag, **V)
    return out


def populate(reg, *, signatures=True) -> dict:
    """Four repositories: docker + OCI images, two tags on one digest, an OCI index and a
    Docker manifest list (untagged children), a cosign signature, and a repository whose
    every tag will be deleted. Deterministic digests (fixed seeds and created times)."""
    u, p = reg.url, {}
    p["web1"] = images.push_image(u, "app/web", "v1", media="docker", seed="web1", created=CREATED, **V)
    p["web2"] = images.push_image(u, "app/web", "v2", media="oci", seed="web2", created=CREATED, **V)
    images.tag_existing(u, "app/web", "latest", p["web2"].digest, **V)
    p["idx"] = images.push_index(u, "app/multi", "latest", media="oci", seed="idx", created=CREATED, **V)
    p["list"] = images.push_index(
        u, "app/multi", "dockerlist", media="docker", seed="lst", created=CREATED, **V
    )
    p["api1"] = images.push_image(u, "app/api", "v1", seed="api1", created=CREATED, **V)
    p["api2"] = images.push_image(u, "app/api", "v2", seed="api2", created=CREATED, **V)
    if signatures:
        p["sig"] = images.push_signature(u, "app/api", p["api1"].digest, **V)
    p["gone"] = [
        images.push_image(u, "team/gone", f"t{i}", seed=f"gone{i}", created=CREATED, **V) for i in range(3)
    ]
    return p


def damage(reg, p) -> None:
    """Delete one tag, move one, delete an index, delete every tag of team/gone."""
    u = reg.url
    assert images.delete_manifest(u, "app/web", p["web1"].digest, **V) == 202  # app/web:v1
    images.tag_existing(u, "app/api", "v2", p["api1"].digest, **V)  # app/api:v2 moved
    assert images.delete_manifest(u, "app/multi", p["idx"].digest, **V) == 202  # index gone
    for img in p["gone"]:
        assert images.delete_manifest(u, "team/gone", img.digest, **V) == 202
    assert images.list_tags(u, "team/gone", **V) == []


# ----------------------------------------------------------------------------- back up, damage, restore


def test_backup_delete_restore_every_digest_identical(reg, target, tmp_path):
    p = populate(reg)
    before = truth(reg)
    assert len(before) == 11
    c = client(reg, tmp_path)
    res = B.backup(c, target.store())
    snap = res.snapshot

    # what the snapshot holds: every tag -> digest, manifests (children too), configs, layer
    # descriptors, and never layer data
    assert {(r, t): d for r, rec in snap.repositories.items() for t, d in rec["tags"].items()} == before
    child_digests = {ch.digest for ch in p["idx"].children + p["list"].children}
    assert child_digests <= set(snap.manifests)
    on_target = target.keys()
    layer_digests = {
        L for img in [p["web1"], p["web2"], p["api1"], p["api2"], *p["gone"]] for L in img.layer_digests
    }
    for key, data in on_target.items():
        if key.startswith(("manifests/", "blobs/")):
            assert sha(data) == B.key_digest(key), key  # content-addressed, intact
            assert B.key_digest(key) not in layer_digests, f"layer data copied: {key}"
    for img in [p["web1"], p["web2"], p["api1"], *p["gone"], *p["idx"].children]:
        assert on_target[B.object_key("manifests", img.digest)] == img.manifest_bytes
        assert B.object_key("blobs", img.config_digest) in on_target
        desc = snap.manifests[img.digest]
        assert [L["digest"] for L in desc["layers"]] == img.layer_digests
        assert all(L["size"] > 0 and L["media_type"] for L in desc["layers"])
    assert on_target[B.object_key("manifests", p["idx"].digest)] == p["idx"].manifest_bytes
    assert snap.counts["tags"] == 11 and snap.counts["repositories"] == 4
    assert snap.counts["indexes"] == 2
    assert not target.keys("inflight/"), "in-flight marker left behind"

    damage(reg, p)
    images.push_image(reg.url, "app/web", "extra", seed="extra", created=CREATED, **V)  # not in snapshot
    damaged = truth(reg)

    # dry run: the diff, and nothing changes
    reg.clear_access_log()
    dry = B.restore(c, target.store(), dry_run=True)
    rows = {(r.repository, r.tag): r for r in dry.rows}
    assert rows[("app/web", "v1")].state == "missing"
    assert rows[("app/web", "v1")].action == B.ACTION_WOULD_RESTORE
    assert rows[("app/api", "v2")].state == "moved"
    assert rows[("app/api", "v2")].current == p["api1"].digest
    assert rows[("app/api", "v2")].action == B.ACTION_WOULD_MOVE
    assert rows[("app/multi", "latest")].missing_manifests == 1
    assert rows[("app/multi", "dockerlist")].action == B.ACTION_PRESENT
    assert all(rows[("team/gone", f"t{i}")].action == B.ACTION_WOULD_RESTORE for i in range(3))
    assert dry.summary()["missing tags"] == 5 and dry.summary()["moved tags"] == 1
    assert {e.method for e in reg.access_log()} <= {"GET", "HEAD"}
    assert truth(reg) == damaged

    # restore: every tag back on its exact digest; the tag not in the snapshot is left alone
    restored = B.restore(c, target.store(), dry_run=False)
    after = truth(reg)
    assert {k: v for k, v in after.items() if k != ("app/web", "extra")} == before
    assert ("app/web", "extra") in after
    acts = {(r.repository, r.tag): r.action for r in restored.rows}
    assert acts[("app/api", "v2")] == B.ACTION_MOVED
    assert acts[("app/web", "v1")] == B.ACTION_RESTORED
    assert acts[("app/web", "latest")] == B.ACTION_PRESENT
    assert not restored.failed
    assert restored.stats["manifests_put"] == 5  # 3 team/gone + web v1 + the index
    # the restored bytes are the original bytes
    for img in p["gone"]:
        body, _, dig = images.get_manifest(reg.url, "team/gone", img.digest, **V)
        assert body == img.manifest_bytes and dig == img.digest
    # a second restore finds nothing to do
    again = B.restore(c, target.store(), dry_run=True)
    assert {r.action for r in again.rows} == {B.ACTION_PRESENT}


def test_restore_selected_repositories_only(reg, target, tmp_path):
    p = populate(reg, signatures=False)
    c = client(reg, tmp_path)
    B.backup(c, target.store())
    damage(reg, p)
    damaged = truth(reg)
    res = B.restore(c, target.store(), repositories="team/**", dry_run=False)
    assert {r.repository for r in res.rows} == {"team/gone"}
    after = truth(reg)
    assert {k: v for k, v in after.items() if k[0] != "team/gone"} == {
        k: v for k, v in damaged.items() if k[0] != "team/gone"
    }
    assert [after[("team/gone", f"t{i}")] for i in range(3)] == [g.digest for g in p["gone"]]


# ----------------------------------------------------------------------------- incremental


def test_second_backup_uploads_only_new_objects(reg, target, tmp_path):
    populate(reg)
    c = client(reg, tmp_path)
    target.start_counting()
    first = B.backup(c, target.store())
    writes1 = target.object_writes()
    objects1 = [k for k in writes1 if k.startswith(("manifests/", "blobs/"))]
    assert len(objects1) == first.objects_written == len(first.snapshot.objects) > 0
    # + the index (and the in-flight marker)
    assert len(writes1) == len(objects1) + target.run_overhead
    assert B.snapshot_key("primary", first.snapshot.id) in writes1

    # one new tag in an existing repository, one new repository, one new tag on an old digest
    n1 = images.push_image(reg.url, "app/web", "v3", seed="web3", created=CREATED, **V)
    n2 = images.push_image(reg.url, "new/repo", "1.0", seed="newrepo", created=CREATED, **V)
    images.tag_existing(reg.url, "app/api", "stable", truth(reg)[("app/api", "v1")], **V)
    expected = {
        B.object_key("manifests", n1.digest),
        B.object_key("blobs", n1.config_digest),
        B.object_key("manifests", n2.digest),
        B.object_key("blobs", n2.config_digest),
    }
    target.start_counting()
    second = B.backup(c, target.store())
    writes2 = target.object_writes()
    assert {k for k in writes2 if k.startswith(("manifests/", "blobs/"))} == expected
    assert len(writes2) == len(expected) + target.run_overhead
    assert second.objects_written == 4
    assert second.snapshot.counts["tags"] == first.snapshot.counts["tags"] + 3
    # registry side: known tags cost a HEAD, not a GET of the manifest
    assert second.requests.get("HEAD", 0) >= first.snapshot.counts["tags"]

    target.start_counting()
    third = B.backup(c, target.store())
    assert third.objects_written == 0
    assert [k for k in target.object_writes() if k.startswith(("manifests/", "blobs/"))] == []
    assert len(B.list_snapshots(target.store(), "primary")) == 3


# ----------------------------------------------------------------------------- half-written backups


def test_backup_failing_before_its_index_leaves_no_snapshot(reg, target, tmp_path):
    """The registry goes away after the first batch uploaded its objects: the run fails, the
    objects stay (reused next time), and no snapshot is listed."""
    populate(reg, signatures=False)
    c = client(reg, tmp_path, retries=0)
    store = target.store()
    batches = []

    def stop_registry_after_first_batch(msg):
        batches.append(msg)
        if len(batches) == 1:
            reg.stop()

    with pytest.raises(Exception) as ei:
        B.backup(c, store, batch_size=1, progress=stop_registry_after_first_batch)
    assert "primary" in str(ei.value)  # the error names the registry
    uploaded = target.keys("manifests/")
    assert uploaded, "the first batch should have uploaded objects before the failure"
    assert target.keys("snapshots/") == {}
    assert B.list_snapshots(store) == []
    with pytest.raises(B.BackupError, match="no complete snapshot"):
        B.restore(c, store)
    assert target.keys("inflight/") == {}  # marker removed on failure

    reg.start()
    target.start_counting()
    ok = B.backup(c, target.store())
    rewritten = set(target.object_writes()) & set(uploaded)
    assert rewritten == set(), "objects of the failed run were uploaded again"
    assert [s.id for s in B.list_snapshots(target.store())] == [ok.snapshot.id]


def test_torn_or_tampered_index_is_never_listed_or_restored(reg, target, tmp_path):
    populate(reg, signatures=False)
    c = client(reg, tmp_path)
    good = B.backup(c, target.store()).snapshot
    store = target.store()
    raw = store.get(good.key)
    torn_id = B.new_snapshot_id(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
    store.put(B.snapshot_key("primary", torn_id), raw[: len(raw) // 2])
    doc = json.loads(raw)
    doc["id"] = B.new_snapshot_id(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6))
    doc["repositories"]["app/web"]["tags"]["v1"] = "sha256:" + "0" * 64  # tampered
    store.put(B.snapshot_key("primary", doc["id"]), json.dumps(doc).encode())
    assert [s.id for s in B.list_snapshots(store)] == [good.id]
    assert B.load_snapshot(store, "primary").id == good.id
    with pytest.raises(B.BackupError, match="checksum mismatch"):
        B.load_snapshot(store, "primary", doc["id"])
    rows = B.snapshot_rows(store, "primary")
    assert sorted(r["status"] for r in rows) == [
        "complete",
        "ignored: checksum mismatch",
        "ignored: not valid JSON (torn or corrupted write)",
    ]


# ----------------------------------------------------------------------------- pruning


def test_prune_keeps_last_n_and_objects_they_use(reg, target, tmp_path):
    populate(reg, signatures=False)
    c = client(reg, tmp_path)
    s1 = B.backup(c, target.store()).snapshot
    tmp_img = images.push_image(reg.url, "app/web", "tmp", seed="tmp", created=CREATED, **V)
    s2 = B.backup(c, target.store()).snapshot
    assert B.object_key("manifests", tmp_img.digest) in s2.objects
    images.delete_manifest(reg.url, "app/web", tmp_img.digest, **V)
    s3 = B.backup(c, target.store()).snapshot
    # another registry's snapshot on the same target uses the same content-addressed objects
    other = B.backup(client(reg, tmp_path, name="replica"), target.store()).snapshot
    res = B.backup(c, target.store(), keep=2)
    s4 = res.snapshot
    assert [s.id for s in B.list_snapshots(target.store(), "primary")] == [s3.id, s4.id]
    assert [s.id for s in B.list_snapshots(target.store(), "replica")] == [other.id]
    assert sorted(res.pruned.deleted_snapshots) == sorted([s1.key, s2.key])
    keys = target.keys()
    # the image only the pruned s2 used is gone; everything a kept snapshot uses is still there
    assert B.object_key("manifests", tmp_img.digest) not in keys
    assert B.object_key("blobs", tmp_img.config_digest) not in keys
    assert res.pruned.deleted_objects == 2
    for snap in (s3, s4, other):
        for k in snap.objects:
            assert k in keys, k
    # and the oldest kept snapshot still restores
    before = truth(reg)
    for (repo, _tag), d in before.items():
        if repo == "team/gone":
            images.delete_manifest(reg.url, repo, d, **V)
    out = B.restore(c, target.store(), snapshot=s3.id, dry_run=False)
    assert not out.failed and truth(reg) == before


# ----------------------------------------------------------------------------- blobs


def test_missing_blobs_come_from_the_blob_source(registry_factory, tmp_path, target):
    """After garbage-collect the layers of a deleted repository are gone: without a blob
    source restore says which blob is missing and changes nothing; with the replica as blob
    source, layers are copied, configs come from the snapshot, and digests are identical."""
    primary, replica = registry_factory(), registry_factory()
    p = populate(primary, signatures=False)
    populate(replica, signatures=False)
    c = client(primary, tmp_path)
    B.backup(c, target.store())
    before = truth(primary)
    for img in p["gone"]:
        images.delete_manifest(primary.url, "team/gone", img.digest, **V)
    gc = primary.garbage_collect()
    assert gc.returncode == 0, gc.stderr
    for img in p["gone"]:
        assert not images.blob_exists(primary.url, "team/gone", img.layer_digests[0], **V)
    damaged = truth(primary)

    primary.clear_access_log()
    res = B.restore(c, target.store(), dry_run=False)
    gone_rows = [r for r in res.rows if r.repository == "team/gone"]
    assert len(gone_rows) == 3 and all(r.action == B.ACTION_CANNOT for r in gone_rows)
    assert all(
        "layer blob sha256:" in r.reason and "no blobSource is configured" in r.reason for r in gone_rows
    )
    # nothing was written for manifests that could not be completed
    assert {e.method for e in primary.access_log()} <= {"GET", "HEAD"}
    assert truth(primary) == damaged

    src = client(replica, tmp_path, name="replica")
    dry = B.restore(c, target.store(), dry_run=True, blob_source=src)
    assert {r.action for r in dry.rows if r.repository == "team/gone"} == {B.ACTION_WOULD_RESTORE}
    res = B.restore(c, target.store(), dry_run=False, blob_source=src)
    assert not res.failed
    assert truth(primary) == before
    assert res.stats["blobs_copied"] == 6  # 2 layers x 3 images, from the replica
    assert res.stats["configs_uploaded"] == 3  # configs from the snapshot itself
    for img in p["gone"]:
        for L in img.layer_digests:
            assert images.blob_exists(primary.url, "team/gone", L, **V)


def test_restore_into_an_empty_registry_mounts_shared_layers(registry_factory, tmp_path, target):
    """Disaster recovery: a new, empty registry gets the snapshot of the old one; layers come
    from the old registry as blob source, each copied once, then mounted across repositories."""
    old, new = registry_factory(), registry_factory()
    images.push_many(
        old.url, 4, 3, shared_base_layer=True, prefix="svc/app", seed="dr", created_start=CREATED, **V
    )
    images.push_index(old.url, "svc/multi", "latest", seed="drx", created=CREATED, **V)
    before = truth(old)
    B.backup(client(old, tmp_path, name="old"), target.store())
    c_new = client(new, tmp_path, name="new")
    res = B.restore(
        c_new, target.store(), registry="old", dry_run=False, blob_source=client(old, tmp_path, name="old")
    )
    assert not res.failed
    assert truth(new) == before
    assert res.stats["blobs_mounted"] >= 3  # the shared base layer, 4 repos
    copied_or_mounted = res.stats["blobs_copied"] + res.stats["blobs_mounted"] + res.stats["configs_uploaded"]
    assert copied_or_mounted == res.stats["missing_blobs"]


def test_manifest_missing_from_target_cannot_be_restored(reg, target, tmp_path):
    p = populate(reg, signatures=False)
    c = client(reg, tmp_path)
    snap = B.backup(c, target.store()).snapshot
    store = target.store()
    store.delete([B.object_key("manifests", p["gone"][0].digest)])
    damage(reg, p)
    res = B.restore(c, store, snapshot=snap.id, dry_run=False)
    rows = {(r.repository, r.tag): r for r in res.rows}
    bad = rows[("team/gone", "t0")]
    assert bad.action == B.ACTION_CANNOT
    assert f"manifest {p['gone'][0].digest} is not on the backup target" in bad.reason
    assert rows[("team/gone", "t1")].action == B.ACTION_RESTORED
    after = truth(reg)
    assert ("team/gone", "t0") not in after
    assert after[("team/gone", "t1")] == p["gone"][1].digest


def test_restore_can_leave_moved_tags_alone(reg, target, tmp_path):
    a = images.push_image(reg.url, "app/x", "stable", seed="x1", created=CREATED, **V)
    b = images.push_image(reg.url, "app/x", "next", seed="x2", created=CREATED, **V)
    c = client(reg, tmp_path)
    B.backup(c, target.store())
    images.tag_existing(reg.url, "app/x", "stable", b.digest, **V)  # promoted on purpose
    assert images.delete_manifest(reg.url, "app/x", a.digest, **V) == 202
    res = B.restore(c, target.store(), dry_run=False, restore_moved=False)
    rows = {r.tag: r for r in res.rows}
    assert rows["stable"].action == B.ACTION_LEFT_MOVED and rows["stable"].current == b.digest
    assert rows["next"].action == B.ACTION_PRESENT
    assert truth(reg) == {("app/x", "stable"): b.digest, ("app/x", "next"): b.digest}
    # with the default, the tag goes back to the snapshot's digest (its manifest re-created)
    res = B.restore(c, target.store(), dry_run=False)
    assert {r.tag: r.action for r in res.rows}["stable"] == B.ACTION_MOVED
    assert truth(reg) == {("app/x", "stable"): a.digest, ("app/x", "next"): b.digest}
