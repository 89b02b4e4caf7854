"""The two Go-built registries of the matrix on their own: distribution v3 (Distribution3Server)
and the referrers-API test registry (ReferrersRegistryServer), the points where they differ from
distribution 2.8 that regkeeper's reclaim, delete and inventory code meets."""

import requests

from tests.support import images


def test_dist3_garbage_collect_reclaims_a_deleted_image(dist3_factory, unique_repo):
    reg = dist3_factory()
    keep = images.push_image(reg.url, unique_repo, "keep", seed="keep")
    gone = images.push_image(reg.url, unique_repo, "gone", seed="gone")
    assert images.delete_manifest(reg.url, unique_repo, gone.digest) == 202
    assert images.list_tags(reg.url, unique_repo) == ["keep"]

    res = reg.garbage_collect()
    assert res.returncode == 0, res.stderr
    for digest in gone.layer_digests + [gone.config_digest]:
        assert not reg.blob_path(digest).exists()
    for digest in keep.layer_digests + [keep.config_digest]:
        assert reg.blob_path(digest).exists()


def test_dist3_readonly_and_restart_keep_the_storage(dist3_factory, unique_repo):
    reg = dist3_factory()
    img = images.push_image(reg.url, unique_repo, "v1", seed=unique_repo)
    reg.set_readonly(True)
    r = requests.post(f"{reg.url}/v2/{unique_repo}/blobs/uploads/", timeout=10)
    # as 2.8 does: a bare 405 "Method not allowed" (text/plain, Allow: GET, HEAD), no OCI error body
    assert (r.status_code, r.headers["Allow"], r.text.strip()) == (405, "GET, HEAD", "Method not allowed")
    assert images.head_manifest(reg.url, unique_repo, "v1") == img.digest
    reg.set_readonly(False)
    images.push_image(reg.url, unique_repo, "v2", seed=unique_repo + "2")
    assert images.list_tags(reg.url, unique_repo) == ["v1", "v2"]


def test_dist3_access_log_counts_requests(dist3_factory, unique_repo):
    reg = dist3_factory()
    reg.clear_access_log()
    images.list_tags(reg.url, unique_repo)
    requests.get(f"{reg.url}/v2/", timeout=10)
    got = [(e.method, e.path, e.status) for e in reg.access_log(min_entries=2)]
    assert got == [("GET", f"/v2/{unique_repo}/tags/list", 404), ("GET", "/v2/", 200)]


def test_referrers_registry_logs_each_request_like_distribution(referrers_registry_factory, unique_repo):
    reg = referrers_registry_factory()
    reg.clear_access_log()
    img = images.push_image(reg.url, unique_repo, "v1", seed=unique_repo)
    entries = reg.access_log(min_entries=1)
    puts = [e for e in entries if e.method == "PUT" and "/manifests/" in e.path]
    assert [(e.path, e.status) for e in puts] == [(f"/v2/{unique_repo}/manifests/v1", 201)]
    assert all(e.status in (200, 201, 202, 404) for e in entries)
    assert images.catalog(reg.url) == [unique_repo]
    assert images.head_manifest(reg.url, unique_repo, img.digest) == img.digest


def test_referrers_registry_limits(referrers_registry_factory, unique_repo):
    """What go-containerregistry's registry lacks: one global blob store (a blob of one repository
    is visible in every other, and a mount is never done), memory only (a restart empties it)."""
    reg = referrers_registry_factory()
    img = images.push_image(reg.url, unique_repo, "v1", seed=unique_repo)
    other = unique_repo + "-other"
    assert images.blob_exists(reg.url, other, img.layer_digests[0])
    r = requests.post(
        f"{reg.url}/v2/{other}/blobs/uploads/",
        params={"mount": img.layer_digests[0], "from": unique_repo},
        timeout=10,
    )
    assert r.status_code == 202  # an upload session, not the 201 of a mount

    # a DELETE by digest also drops the tags of that manifest (the helper's spec fix)
    images.tag_existing(reg.url, unique_repo, "v1-copy", img.digest)
    assert images.delete_manifest(reg.url, unique_repo, img.digest) == 202
    assert images.list_tags(reg.url, unique_repo) == []

    images.push_image(reg.url, unique_repo, "v2", seed=unique_repo + "2")
    reg.restart()
    assert images.catalog(reg.url) == []
