"""``unlink_manifest`` on both storages (a directory and a real moto S3 bucket): it removes exactly
one manifest's revision link and the named tags, nothing beside them, and a repository, tag or
digest that could reach outside its directory is refused by name before anything is removed."""

import re

import pytest

from regkeeper.errors import RegkeeperError
from regkeeper.storage import FilesystemStorage, S3Storage

V2 = "docker/registry/v2"
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
LAYOUT = {
    f"{V2}/repositories/team/app/_manifests/revisions/sha256/{'a' * 64}/link": A,
    f"{V2}/repositories/team/app/_manifests/revisions/sha256/{'b' * 64}/link": B,
    f"{V2}/repositories/team/app/_manifests/tags/v1/current/link": A,
    f"{V2}/repositories/team/app/_manifests/tags/v1/index/sha256/{'a' * 64}/link": A,
    f"{V2}/repositories/team/app/_manifests/tags/v2/current/link": B,
    f"{V2}/repositories/team/other/_manifests/tags/v1/current/link": A,
    f"{V2}/blobs/sha256/aa/{'a' * 64}/data": "{}",
}


@pytest.fixture(params=["fs", "s3"])
def store(request, tmp_path):
    """(storage, files()) with LAYOUT written to it."""
    if request.param == "fs":
        for key, body in LAYOUT.items():
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / key).write_text(body)
        files = lambda: {  # noqa: E731
            str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()
        }
        return FilesystemStorage(str(tmp_path)), files
    moto = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    s3 = moto.client()
    for key, body in LAYOUT.items():
        s3.put_object(Bucket=bucket, Key=f"root/{key}", Body=body.encode())

    def files() -> set[str]:
        out = s3.list_objects_v2(Bucket=bucket, Prefix="root/").get("Contents", [])
        return {o["Key"].removeprefix("root/") for o in out}

    return S3Storage(s3, bucket, "root"), files


def test_unlink_removes_the_revision_and_named_tags_only(store):
    storage, files = store
    storage.unlink_manifest("team/app", A, ["v1"])
    gone = set(LAYOUT) - files()
    assert gone == {
        f"{V2}/repositories/team/app/_manifests/revisions/sha256/{'a' * 64}/link",
        f"{V2}/repositories/team/app/_manifests/tags/v1/current/link",
        f"{V2}/repositories/team/app/_manifests/tags/v1/index/sha256/{'a' * 64}/link",
    }
    # the other tag, the other revision, the same tag name in another repository and the blob stay
    storage.unlink_manifest("team/app", A, ["v1"])  # already gone: fine
    assert set(LAYOUT) - files() == gone


@pytest.mark.parametrize(
    ("repo", "digest", "tags", "named"),
    [
        ("team/app", A, ["../../other/_manifests/tags/v1"], "tag '../../other/_manifests/tags/v1'"),
        ("team/app", A, ["v2", ".."], "tag '..'"),
        ("team/app", A, [""], "tag ''"),
        ("team/../team/app", A, ["v2"], "repository 'team/../team/app'"),
        ("team/app", "sha256:../x", ["v2"], "digest is not valid"),
        ("team/app", "a" * 64, ["v2"], "digest is not valid"),
    ],
)
def test_a_name_reaching_outside_is_refused_and_nothing_is_removed(store, repo, digest, tags, named):
    storage, files = store
    with pytest.raises(RegkeeperError, match=re.escape(named)):
        storage.unlink_manifest(repo, digest, tags)
    assert files() == set(LAYOUT)  # not even the valid tag before the bad one
