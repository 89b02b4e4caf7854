"""The one referrers-API probe of a scan on registries that answer the unknown route with
something other than 404 (seen in the wild: 400 from proxies and older registries, 405, 501):
the registry has no API (tag-schema mode), the scan goes on. A transient answer is retried by
the transport like any call; one that stays broken fails the scan (nothing is planned on a
half-known registry)."""

import pytest

from regkeeper.errors import RegistryError
from regkeeper.inventory import scan
from regkeeper.oci import RegistryClient
from tests.support import images


@pytest.mark.parametrize("status", [400, 405, 501])
def test_a_refused_probe_means_no_api(registry, fault_proxy_factory, unique_repo, status):
    img = images.push_image(registry.url, unique_repo, "v1", media="oci", seed=unique_repo)
    sig = images.push_signature(registry.url, unique_repo, img.digest)
    proxy = fault_proxy_factory(registry.url)
    proxy.add_fault("status", status=status, path_regex="/referrers/")
    client = RegistryClient("t", proxy.url, retries=1)
    inv = scan(client, repositories=[unique_repo])
    assert client.referrers_mode == "tag-schema" and inv.stats["referrers_mode"] == "tag-schema"
    [ref] = inv.repositories[unique_repo].referrers[img.digest]
    assert (ref.digest, ref.discovered_by) == (sig.digest, "cosign-tag")


def test_a_probe_that_stays_broken_fails_the_scan(registry, fault_proxy_factory, unique_repo):
    images.push_image(registry.url, unique_repo, "v1", media="oci", seed=unique_repo)
    proxy = fault_proxy_factory(registry.url)
    proxy.add_fault("status", status=503, path_regex="/referrers/", times=10)
    client = RegistryClient("t", proxy.url, retries=1)
    with pytest.raises(RegistryError) as e:
        scan(client, repositories=[unique_repo])
    assert "/referrers/" in str(e.value) and client.referrers_mode is None
