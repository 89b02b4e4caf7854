"""Backup target storage, snapshot indexes and pruning: pure and fast (a temp directory only).

The S3 side of the same store protocol runs against a real moto_server in
tests/integration/test_backup.py."""

import hashlib
import json
import os
from datetime import timedelta

import pytest

from regkeeper import backup as B
from regkeeper.backup import retention  # prune looks up _live_markers there
from regkeeper.config import BackupConfig, parse_config
from regkeeper.util import utcnow


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- FileStore


def test_filestore_roundtrip_list_delete(tmp_path):
    s = B.FileStore(tmp_path / "t")
    assert s.list("manifests/") == {}  # nothing there yet, not even the root
    s.put("manifests/sha256/aa", b"one")
    s.put("manifests/sha256/ab", b"three")
    s.put("blobs/sha256/cc", b"x")
    s.put("snapshots/reg/1.json", b"{}")
    assert s.get("manifests/sha256/ab") == b"three"
    assert s.exists("blobs/sha256/cc") and not s.exists("blobs/sha256/zz")
    assert s.list("manifests/") == {"manifests/sha256/aa": 3, "manifests/sha256/ab": 5}
    assert s.list("manifests/sha256/a") == {"manifests/sha256/aa": 3, "manifests/sha256/ab": 5}
    assert s.list("manifests/sha256/ab") == {"manifests/sha256/ab": 5}
    assert set(s.list("")) == {
        "manifests/sha256/aa",
        "manifests/sha256/ab",
        "blobs/sha256/cc",
        "snapshots/reg/1.json",
    }
    assert s.delete(["manifests/sha256/aa", "manifests/sha256/gone"]) == 1
    assert set(s.list("manifests/")) == {"manifests/sha256/ab"}
    with pytest.raises(B.ObjectMissing, match="manifests/sha256/aa does not exist"):
        s.get("manifests/sha256/aa")
    assert s.stats["PUT"] == 4 and s.stats["DELETE"] == 1


def test_filestore_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    s = B.FileStore(tmp_path)
    s.put("snapshots/r/a.json", b"old")
    s.put("snapshots/r/a.json", b"new contents")
    assert s.get("snapshots/r/a.json") == b"new contents"
    assert sorted(os.listdir(tmp_path / "snapshots" / "r")) == ["a.json"]
    # a temp file left by a crash mid-write is never listed as an object
    (tmp_path / "snapshots" / "r" / ".tmp-crashed").write_bytes(b"{partial")
    assert list(s.list("snapshots/")) == ["snapshots/r/a.json"]


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "a\\b"])
def test_filestore_rejects_unsafe_keys(tmp_path, key):
    with pytest.raises(B.BackupError, match="invalid object key"):
        B.FileStore(tmp_path).put(key, b"x")


def test_filestore_write_failure_names_target_and_key(tmp_path):
    (tmp_path / "snapshots").write_bytes(b"a file where a directory should be")
    s = B.FileStore(tmp_path)
    with pytest.raises(B.BackupError, match=r"file://.*cannot write snapshots/r/x\.json"):
        s.put("snapshots/r/x.json", b"{}")


# ----------------------------------------------------------------------------- targets


def test_open_target_parses_urls(tmp_path, monkeypatch):
    s = B.open_target(f"file://{tmp_path}/bk")
    assert isinstance(s, B.FileStore) and s.root == tmp_path / "bk"
    monkeypatch.chdir(tmp_path)
    rel = B.open_target("file://./backups")  # BackupConfig's default target
    assert rel.root == tmp_path / "backups"
    cfg = BackupConfig.model_validate(
        {
            "target": "s3://bucket-x/meta/prod",
            "endpoint": "http://127.0.0.1:1",
            "accessKey": "env:BK_KEY",
            "secretKey": "env:BK_SECRET",
        }
    )
    monkeypatch.setenv("BK_KEY", "AKIA-test")
    monkeypatch.setenv("BK_SECRET", "very-secret-value")
    s3 = B.open_target(cfg.target, cfg)
    assert isinstance(s3, B.S3Store)
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket-x", "meta/prod", "s3://bucket-x/meta/prod")
    assert s3._key("manifests/sha256/ab") == "meta/prod/manifests/sha256/ab"
    assert "very-secret-value" not in repr(s3) and "very-secret-value" not in repr(cfg)
    with pytest.raises(B.BackupError, match="must be s3://bucket/prefix or file:///path"):
        B.open_target("ftp://x/y")


def test_object_keys():
    d = sha(b"m")
    assert B.object_key("manifests", d) == f"manifests/sha256/{d[7:]}"
    assert B.key_digest(B.object_key("blobs", d)) == d
    with pytest.raises(B.BackupError):
        B.object_key("manifests", "sha256:../../etc")


def test_snapshot_ids_sort_by_time_and_are_unique():
    t = utcnow()
    ids = [B.new_snapshot_id(t + timedelta(milliseconds=i)) for i in (0, 1, 2, 1000, 60_000)]
    assert ids == sorted(ids)
    assert len({B.new_snapshot_id(t) for _ in range(50)}) == 50
    assert B._ID_RE.match(ids[0])


# ----------------------------------------------------------------------------- indexes


def _body(sid="20250101T000000.000Z-aaaaaa", registry="reg", objects=(), complete=True):
    return {
        "format": B.FORMAT,
        "id": sid,
        "registry": registry,
        "complete": complete,
        "objects": sorted(objects),
        "repositories": {},
        "manifests": {},
        "counts": {"objects": len(objects)},
        "finished": "2025-01-01T00:00:00+00:00",
    }


def test_seal_and_unseal():
    raw = B.seal(_body(objects=["manifests/sha256/aa"]))
    doc, why = B.unseal(raw)
    assert why is None and doc["objects"] == ["manifests/sha256/aa"]
    assert doc["checksum"].startswith("sha256:")
    # formatting does not matter, content does
    assert B.unseal(json.dumps(json.loads(raw)).encode())[0] is not None


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
        (lambda raw: raw.replace(b"manifests/sha256/aa", b"manifests/sha256/ab"), "checksum mismatch"),
        (
            lambda raw: json.dumps({k: v for k, v in json.loads(raw).items() if k != "checksum"}).encode(),
            "no checksum",
        ),
        (lambda raw: b"[]", "not a JSON object"),
    ],
)
def test_unseal_rejects_torn_tampered_or_unchecksummed(mutate, reason):
    doc, why = B.unseal(mutate(B.seal(_body(objects=["manifests/sha256/aa"]))))
    assert doc is None and reason in why


def test_unseal_rejects_incomplete_even_with_valid_checksum():
    doc, why = B.unseal(B.seal(_body(complete=False)))
    assert doc is None and why == "not marked complete"


def test_only_complete_checksummed_snapshots_are_listed(tmp_path):
    s = B.FileStore(tmp_path)
    ids = ["20250101T000000.000Z-aaaaaa", "20250102T000000.000Z-bbbbbb", "20250103T000000.000Z-cccccc"]
    for sid in ids:
        s.put(B.snapshot_key("reg", sid), B.seal(_body(sid)))
    # newer than all of them, but none of these is a snapshot:
    s.put(
        B.snapshot_key("reg", "20250104T000000.000Z-dddddd"),
        B.seal(_body("20250104T000000.000Z-dddddd"))[:40],
    )
    s.put(
        B.snapshot_key("reg", "20250105T000000.000Z-eeeeee"),
        B.seal(_body("20250105T000000.000Z-eeeeee", complete=False)),
    )
    s.put(B.snapshot_key("reg", "20250106T000000.000Z-ffffff"), B.seal(_body("20250101T000000.000Z-aaaaaa")))
    s.put(
        B.snapshot_key("other", "20250101T000000.000Z-111111"),
        B.seal(_body("20250101T000000.000Z-111111", registry="other")),
    )
    assert [x.id for x in B.list_snapshots(s, "reg")] == ids
    assert B.load_snapshot(s, "reg").id == ids[-1]  # latest = newest complete one
    assert B.load_snapshot(s, "reg", ids[0]).id == ids[0]
    assert [x.registry for x in B.list_snapshots(s)] == ["other", "reg", "reg", "reg"]
    entries = {e.id: e for e in B.scan_snapshots(s, "reg")}
    assert "not valid JSON" in entries["20250104T000000.000Z-dddddd"].reason
    assert entries["20250105T000000.000Z-eeeeee"].reason == "not marked complete"
    assert "do not match its key" in entries["20250106T000000.000Z-ffffff"].reason
    with pytest.raises(B.BackupError, match="not usable: not marked complete"):
        B.load_snapshot(s, "reg", "20250105T000000.000Z-eeeeee")
    with pytest.raises(B.BackupError, match=rf"not found at .*\(latest: {ids[-1]}\)"):
        B.load_snapshot(s, "reg", "20240101T000000.000Z-000000")
    with pytest.raises(B.BackupError, match="no complete snapshot of registry 'nope'"):
        B.load_snapshot(s, "nope")
    rows = B.snapshot_rows(s, "reg")
    assert [r["status"] for r in rows].count("complete") == 3
    assert any(r["status"] == "ignored: not marked complete" for r in rows)


def test_commit_refuses_when_an_object_is_missing(tmp_path):
    s = B.FileStore(tmp_path)
    run = B.BackupRun(
        id=B.new_snapshot_id(),
        registry="reg",
        registry_url="http://r",
        started=utcnow().isoformat(),
        existing={},
    )
    d = sha(b"manifest")
    batch = B.BatchResult(
        repositories={"a": {"tags": {"v1": d}, "manifests": [d], "errors": []}},
        manifests={
            d: {
                "media_type": "x",
                "size": 8,
                "kind": "image",
                "children": [],
                "config": None,
                "layers": [],
                "subject": None,
            }
        },
    )
    with pytest.raises(B.BackupError, match="not on file://.*no index written"):
        B.commit_snapshot(s, run, [batch])
    assert B.list_snapshots(s) == [] and s.list("snapshots/") == {}
    s.put(B.object_key("manifests", d), b"manifest")
    run.existing = s.list("manifests/")
    snap = B.commit_snapshot(s, run, [batch])
    assert [x.id for x in B.list_snapshots(s)] == [snap.id]
    assert snap.counts["tags"] == 1 and snap.objects == [B.object_key("manifests", d)]


# ----------------------------------------------------------------------------- prune


def _snap(store, registry, n, objects):
    sid = f"2025010{n}T000000.000Z-{n:06x}"
    for k in objects:
        if not store.exists(k):
            store.put(k, k.encode())
    store.put(B.snapshot_key(registry, sid), B.seal(_body(sid, registry, objects)))
    return sid


def _k(name):
    return B.object_key("manifests", sha(name.encode()))


def test_prune_keeps_last_n_and_deletes_only_unused_objects(tmp_path):
    s = B.FileStore(tmp_path)
    old = _snap(s, "reg", 1, [_k("a"), _k("shared")])
    mid = _snap(s, "reg", 2, [_k("b"), _k("shared")])
    new = _snap(s, "reg", 3, [_k("c"), _k("shared")])
    newest = _snap(s, "reg", 4, [_k("c"), _k("d")])
    other = _snap(s, "other", 1, [_k("a")])  # another registry uses "a"
    preview = B.prune(s, 2, registry="reg", dry_run=True)
    assert preview.deleted_snapshots == [B.snapshot_key("reg", old), B.snapshot_key("reg", mid)]
    assert preview.deleted_objects == 1  # only "b": "a" is other's
    assert len(B.list_snapshots(s, "reg")) == 4  # dry run deleted nothing
    assert s.exists(_k("b"))

    res = B.prune(s, 2, registry="reg")
    assert [x.id for x in B.list_snapshots(s, "reg")] == [new, newest]
    assert [x.id for x in B.list_snapshots(s, "other")] == [other]
    assert res.deleted_objects == 1 and not s.exists(_k("b"))
    for k in (_k("a"), _k("shared"), _k("c"), _k("d")):  # used by a kept snapshot: kept
        assert s.exists(k), k
    # pruning "other" with keep=1 changes nothing; keep=1 on reg drops "new" and "shared"
    B.prune(s, 1, registry="other")
    assert s.exists(_k("a"))
    B.prune(s, 1, registry="reg")
    assert [x.id for x in B.list_snapshots(s, "reg")] == [newest]
    assert not s.exists(_k("shared")) and s.exists(_k("c")) and s.exists(_k("d"))


def test_prune_leaves_objects_of_an_in_flight_backup(tmp_path):
    s = B.FileStore(tmp_path)
    _snap(s, "reg", 1, [_k("a")])
    s.put(_k("fresh"), b"uploaded by a backup that has not written its index yet")
    s.put(B.inflight_key("reg", "run1"), json.dumps({"started": utcnow().isoformat()}).encode())
    res = B.prune(s, 1, registry="reg")
    assert res.sweep_skipped and "inflight/reg/run1.json" in res.sweep_skipped
    assert s.exists(_k("fresh"))
    # a marker older than the staleness limit (a crashed run) no longer blocks the sweep
    stale = (utcnow() - B.INFLIGHT_STALE - timedelta(minutes=1)).isoformat()
    s.put(B.inflight_key("reg", "run1"), json.dumps({"started": stale}).encode())
    res = B.prune(s, 1, registry="reg")
    assert res.sweep_skipped is None and res.deleted_objects == 1
    assert not s.exists(_k("fresh")) and s.exists(_k("a"))
    assert s.list("inflight/") == {}  # the stale marker is tidied away
    # an unreadable marker is treated as live (fail safe) and named
    s.put(_k("fresh2"), b"x")
    s.put(B.inflight_key("reg", "run2"), b"{garbled")
    res = B.prune(s, 1, registry="reg")
    assert "inflight/reg/run2.json" in res.sweep_skipped and s.exists(_k("fresh2"))


def test_prune_refuses_keep_below_one(tmp_path):
    with pytest.raises(B.BackupError, match="backup.keep must be at least 1"):
        B.prune(B.FileStore(tmp_path), 0)


def test_prune_ignores_invalid_indexes_but_never_a_valid_one(tmp_path):
    s = B.FileStore(tmp_path)
    sid = _snap(s, "reg", 1, [_k("a")])
    s.put(B.snapshot_key("reg", "20250109T000000.000Z-999999"), b"{torn")
    res = B.prune(s, 1, registry="reg")
    assert [x.id for x in B.list_snapshots(s, "reg")] == [sid]
    assert res.invalid and "not valid JSON" in res.invalid[0][1]
    assert s.exists(_k("a"))


def test_list_snapshots_cli_uses_the_configured_target(tmp_path):
    cfg = parse_config(f"""
mirrorRepositories:
- {{name: local, url: http://127.0.0.1:5000}}
backup: {{target: "file://{tmp_path}/bk", keep: 3}}
""")
    store = B.FileStore(tmp_path / "bk")
    _snap(store, "local", 1, [_k("a")])
    rows = B.list_snapshots_cli(cfg, "local")
    assert [(r["registry"], r["status"]) for r in rows] == [("local", "complete")]
    assert B.list_snapshots_cli(cfg) == rows
    nobk = parse_config("mirrorRepositories:\n- {name: local, url: http://127.0.0.1:5000}\n")
    with pytest.raises(B.BackupError, match="no backup section"):
        B.list_snapshots_cli(nobk)


def test_prune_rereads_indexes_a_backup_committed_meanwhile(tmp_path, monkeypatch):
    """Another registry's backup commits (index written, marker removed) after prune read the
    indexes and listed the objects: its objects must not be swept."""
    s = B.FileStore(tmp_path)
    _snap(s, "reg", 1, [_k("a")])
    s.put(_k("b-new"), b"uploaded by other's backup before prune started")
    real = retention._live_markers

    def commit_then_check(store, now, stale_after):
        _snap(store, "other", 5, [_k("b-new")])  # the commit lands right now
        return real(store, now, stale_after)

    monkeypatch.setattr(retention, "_live_markers", commit_then_check)
    res = B.prune(s, 1, registry="reg")
    assert s.exists(_k("b-new")) and res.deleted_objects == 0
    assert [x.id for x in B.list_snapshots(s, "other")]
