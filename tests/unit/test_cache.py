"""The digest cache: one file per digest (media type in a header line), read with one open and
checked with one hash; the old two-file layout (content + ``.type`` sidecar) still read, then
rewritten in the one-file layout."""

import shutil
from pathlib import Path

import regkeeper.cache as cache_mod
from regkeeper.cache import MAGIC, DigestCache, sha256_digest
from tests.support.opens import files_opened

MT = "application/vnd.docker.distribution.manifest.v2+json"
RAW = b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}'
DIGEST = sha256_digest(RAW)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_one_file_per_digest_no_sidecar(tmp_path):
    c = DigestCache(tmp_path)
    c.put("manifests", DIGEST, RAW, MT)
    files = _files(tmp_path)
    assert len(files) == 1 and files[0].name == DIGEST.split(":")[1]
    assert not list(tmp_path.rglob("*.type"))
    assert files[0].read_bytes() == MAGIC + MT.encode() + b"\n" + RAW


def test_a_cached_manifest_is_read_with_one_open_and_one_hash(tmp_path, monkeypatch):
    DigestCache(tmp_path).put("manifests", DIGEST, RAW, MT)
    hashes = []
    real = cache_mod.verify_digest
    monkeypatch.setattr(cache_mod, "verify_digest", lambda d, b: hashes.append(d) or real(d, b))
    c = DigestCache(tmp_path)  # a later run
    with files_opened(tmp_path) as opened:
        assert c.get("manifests", DIGEST) == (RAW, MT)
    assert opened == [str(_files(tmp_path)[0])]
    assert hashes == [DIGEST]
    assert (c.hits, c.misses) == (1, 0)


def test_put_after_a_checked_fetch_hashes_nothing(tmp_path, monkeypatch):
    hashes = []
    monkeypatch.setattr(cache_mod, "verify_digest", lambda d, b: hashes.append(d) or True)
    DigestCache(tmp_path).put("manifests", DIGEST, RAW, MT, checked=True)
    assert hashes == []


def test_blob_without_media_type(tmp_path):
    data = b'{"architecture":"amd64"}'
    d = sha256_digest(data)
    c = DigestCache(tmp_path)
    c.put("blobs", d, data)
    assert c.get("blobs", d) == (data, None)


def test_old_two_file_layout_is_read_then_rewritten(tmp_path):
    # what the cache wrote before: the content alone, the media type in a .type sidecar
    p = tmp_path / "manifests" / "sha256" / DIGEST[7:9] / DIGEST[7:]
    p.parent.mkdir(parents=True)
    p.write_bytes(RAW)
    p.with_suffix(".type").write_text(MT)
    c = DigestCache(tmp_path)
    assert c.get("manifests", DIGEST) == (RAW, MT)
    assert _files(tmp_path) == [p]  # rewritten in the one-file layout, sidecar gone
    assert p.read_bytes().startswith(MAGIC)
    with files_opened(tmp_path) as opened:
        assert DigestCache(tmp_path).get("manifests", DIGEST) == (RAW, MT)
    assert opened == [str(p)]


def test_old_layout_without_sidecar_and_read_only_cache(tmp_path, monkeypatch):
    p = tmp_path / "manifests" / "sha256" / DIGEST[7:9] / DIGEST[7:]
    p.parent.mkdir(parents=True)
    p.write_bytes(RAW)

    def refuse(*a, **kw):
        raise PermissionError("read-only")

    monkeypatch.setattr(cache_mod, "atomic_write", refuse)
    assert DigestCache(tmp_path).get("manifests", DIGEST) == (RAW, None)  # still answers
    assert p.read_bytes() == RAW


def test_torn_or_tampered_entries_are_misses(tmp_path):
    c = DigestCache(tmp_path)
    c.put("manifests", DIGEST, RAW, MT)
    p = _files(tmp_path)[0]
    for bad in (
        MAGIC + MT.encode() + b"\n" + RAW[:-3],  # torn content
        MAGIC + MT.encode(),  # no header end
        MAGIC + b"x" * 600 + b"\n" + RAW,  # header longer than any media type
        b"{}",  # tampered, old layout
    ):
        p.write_bytes(bad)
        assert c.get("manifests", DIGEST) is None
        assert not p.exists()  # removed: the next fetch writes it again
    c.put("manifests", DIGEST, RAW, MT)
    assert c.get("manifests", DIGEST) == (RAW, MT)


def test_wrong_content_is_never_cached_and_a_removed_directory_comes_back(tmp_path):
    c = DigestCache(tmp_path)
    c.put("manifests", DIGEST, b"other bytes", MT)
    assert _files(tmp_path) == []
    c.put("manifests", DIGEST, RAW, MT)
    shutil.rmtree(tmp_path / "manifests")  # cache cleared while the process runs
    c.put("manifests", DIGEST, RAW, MT)
    assert c.get("manifests", DIGEST) == (RAW, MT)
