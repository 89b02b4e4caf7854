"""The read-back after a copy asks only what the copy did not already prove: a tag whose PUT the
target answered with the source digest (Docker-Content-Digest, checked by put_manifest) is not
HEADed again; where the target gave no digest, the tag is read back. Requests are counted by a
fault proxy in front of the target (its record), on the server side."""

from regkeeper.config import ReplicationRule
from regkeeper.oci import RegistryClient
from regkeeper.replicate import replicate_target
from tests.support import images
from tests.support.faultproxy import FaultProxy

RULE = ReplicationRule.model_validate({"from": "primary", "to": ["replica"]})


class NoDigestProxy(FaultProxy):
    """A target that stores manifests but answers their PUT without Docker-Content-Digest."""

    def _send_head(self, h, resp, length):
        if h.command == "PUT" and "/manifests/" in h.path:
            real = resp.getheaders
            resp.getheaders = lambda: [(k, v) for k, v in real() if k.lower() != "docker-content-digest"]
        super()._send_head(h, resp, length)


def fill(url: str) -> dict[str, str]:
    """tag -> digest in repository rb/app: images, an alias, a multi-arch index, a signature."""
    pushed = images.push_many(url, repos=["rb/app"], tags_per_repo=3, seed=21)
    idx = images.push_index(url, "rb/app", "multi", seed="rb-idx")
    sig = images.push_signature(url, "rb/app", idx.digest, "sig")
    images.tag_existing(url, "rb/app", "latest", pushed[-1].digest)
    out = {p.tag: p.digest for p in pushed}
    out.update({"multi": idx.digest, "latest": pushed[-1].digest})
    out["sha256-" + idx.digest.split(":")[1] + ".sig"] = sig.digest
    return out


def manifest_calls(proxy: FaultProxy, method: str) -> list[str]:
    return [r.path for r in proxy.requests if r.method == method and "/manifests/" in r.path]


def test_cold_copy_reads_back_nothing_the_put_confirmed(registry_factory):
    src_reg, dst_reg = registry_factory(), registry_factory()
    want = fill(src_reg.url)
    proxy = FaultProxy(dst_reg.url)
    try:
        src, dst = RegistryClient("primary", src_reg.url), RegistryClient("replica", proxy.url)
        res = replicate_target(src, dst, RULE, "replica", verify=True)
        assert res.status == "ok", res.failed_items
        r = res.repositories[0]
        assert sorted(r.copied) == sorted(want) and sorted(r.confirmed) == sorted(want)
        puts = manifest_calls(proxy, "PUT")
        heads = [(i, rec.path) for i, rec in enumerate(proxy.requests) if rec.method == "HEAD"]
        for tag in want:  # no HEAD on a tag at all: the plan saw an empty target, the PUT said it
            assert f"/v2/rb/app/manifests/{tag}" in puts
            assert not [p for _, p in heads if p == f"/v2/rb/app/manifests/{tag}"]
        for i, rec in enumerate(proxy.requests):  # nothing PUT is HEADed afterwards
            if rec.method == "PUT" and "/manifests/" in rec.path:
                assert not [p for j, p in heads if j > i and p == rec.path]
        assert (
            images.list_tags(dst_reg.url, "rb/app")
            and {t: images.head_manifest(dst_reg.url, "rb/app", t) for t in want} == want
        )
    finally:
        proxy.stop()


def test_a_put_without_digest_is_read_back(registry_factory):
    src_reg, dst_reg = registry_factory(), registry_factory()
    want = fill(src_reg.url)
    proxy = NoDigestProxy(dst_reg.url)
    try:
        src, dst = RegistryClient("primary", src_reg.url), RegistryClient("replica", proxy.url)
        res = replicate_target(src, dst, RULE, "replica", verify=True)
        assert res.status == "ok", res.failed_items
        r = res.repositories[0]
        assert sorted(r.copied) == sorted(want) and r.confirmed == []
        heads = manifest_calls(proxy, "HEAD")
        for tag in want:  # each tag read back once, after its PUT
            path = f"/v2/rb/app/manifests/{tag}"
            assert heads.count(path) == 1
            put_at = next(
                i for i, rec in enumerate(proxy.requests) if rec.method == "PUT" and rec.path == path
            )
            assert any(rec.method == "HEAD" and rec.path == path for rec in proxy.requests[put_at:])
    finally:
        proxy.stop()


def test_a_put_the_registry_did_not_keep_fails_the_read_back(registry_factory):
    """A target that answers 201 without a digest and without storing anything: only the
    read-back can tell, and it does."""
    src_reg, dst_reg = registry_factory(), registry_factory()
    images.push_image(src_reg.url, "rb/lost", "v1", seed="lost")
    proxy = FaultProxy(dst_reg.url)
    proxy.add_fault("status", method="PUT", path_regex=r"/manifests/v1$", status=201)
    try:
        src, dst = RegistryClient("primary", src_reg.url), RegistryClient("replica", proxy.url)
        res = replicate_target(src, dst, RULE, "replica", verify=True)
        r = res.repositories[0]
        assert r.copied == [] and r.confirmed == []
        assert [t for t, _ in r.failed] == ["v1"] and "read-back" in r.failed[0][1]
        assert res.status == "failed"
    finally:
        proxy.stop()
