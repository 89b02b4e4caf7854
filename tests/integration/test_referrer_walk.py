"""THE referrer walk (regkeeper/oci/referrers.py ``walk_referrers``), used by the scan
(``referrers.discover_api``), replication and backup, on a registry with the referrers API and
on distribution 2.8 (the ``sha256-<hex>`` fallback index): many repositories at once, two levels
and not a third, each (repository, digest) read once, the parent filter, and a failed read
collected or raised.

Per repository ``w/x`` and ``w/y`` (the same image ``a`` in both: one digest, two repositories):
``a`` <- ``sbom`` (SPDX) <- ``sbom-x`` (level 2) <- ``deep`` (level 3: never reached)
``a`` <- ``sig`` (a cosign signature) <- ``sig-y`` (level 2, only when signatures are asked)
``sbom`` <- ``sbom-sig`` (a signature, level 2); ``b``: an image without referrers."""

import datetime as dt

import pytest

from regkeeper.errors import NotFoundError, RegistryError
from regkeeper.oci import RegistryClient
from regkeeper.oci.referrers import Referrers, fallback_tag, walk_referrers
from regkeeper.referrers import COSIGN_TYPES, may_have_referrers
from tests.support import images

REPOS = ("w/x", "w/y")
CREATED = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)  # the same bytes in both repositories
SIG = COSIGN_TYPES["sig"]
BOTH = pytest.mark.parametrize("registry_matrix", ["dist28-fs", "referrers-api"], indirect=True)


# (name, its subject, artifact type): pushed in this order
LINKS = (
    ("sbom", "a", "application/spdx+json"),
    ("sig", "a", SIG),
    ("sbom_x", "sbom", "application/vnd.x"),
    ("sbom_sig", "sbom", SIG),
    ("sig_y", "sig", "application/vnd.y"),
    ("deep", "sbom_x", "application/vnd.z"),
)


def _push(reg) -> dict[str, dict[str, str]]:
    """repo -> name -> digest (the tree of the module docstring)."""
    fb = not reg.capabilities.referrers_api  # without the API, as oras does: the fallback index
    out = {}
    for repo in REPOS:
        pushed = {
            "a": images.push_image(reg.url, repo, "a", media="oci", seed="walk-same", created=CREATED),
            "b": images.push_image(reg.url, repo, "b", media="oci", seed=repo + "-b"),
        }
        for name, subject, atype in LINKS:
            pushed[name] = images.push_referrer(
                reg.url, repo, pushed[subject], artifact_type=atype, fallback_tag=fb
            )
        out[repo] = {name: img.digest for name, img in pushed.items()}
    assert out["w/x"]["a"] == out["w/y"]["a"]
    return out


def _names(d: dict[str, dict[str, str]]) -> dict[str, str]:
    """digest -> name, in either repository (``a`` is one digest in both)."""
    return {digest: name for names in d.values() for name, digest in names.items()}


def _reads(reg, names: dict[str, str]) -> list[str]:
    """The referrers reads the registry served since the log was cleared, as ``repo:name``:
    API GETs, or GETs of a fallback index tag."""
    by_key = names | {fallback_tag(digest): name for digest, name in names.items()}
    out = []
    for e in reg.access_log():
        if e.method == "GET" and ("/referrers/" in e.path or "/manifests/sha256-" in e.path):
            parts = e.path.split("/")  # /v2/w/x/referrers/<digest>
            out.append(f"{parts[2]}/{parts[3]}:{by_key[parts[-1]]}")
    return sorted(out)


def _tree(walk, names) -> set[tuple]:
    return {
        (f.repo, names[f.subject], names[f.parent], names[f.descriptor.digest], f.level) for f in walk.found
    }


def _expected(*, sigs: bool = True) -> set[tuple]:
    rows = {
        ("a", "a", "sbom", 1),
        ("a", "a", "sig", 1),
        ("a", "sbom", "sbom_x", 2),
        ("a", "sbom", "sbom_sig", 2),
    }
    if sigs:
        rows.add(("a", "sig", "sig_y", 2))
    return {(repo, *r) for repo in REPOS for r in rows}


def _client(reg, url: str | None = None, **kw) -> RegistryClient:
    client = RegistryClient(reg.name, url or reg.url, **kw)
    client.detect_referrers_mode("w/x", "sha256:" + "0" * 64)  # the mode first: reads below are the walk's
    return client


@BOTH
def test_many_repositories_two_levels_each_digest_read_once(registry_matrix):
    reg = registry_matrix
    d = _push(reg)
    names = _names(d)
    client = _client(reg)
    mode = "api" if reg.capabilities.referrers_api else "tag-schema"
    assert client.referrers_mode == mode
    x, y = d["w/x"], d["w/y"]
    items = [("w/x", x["a"]), ("w/y", y["a"]), ("w/x", x["a"]), ("w/x", x["b"])]
    reg.clear_access_log()
    walk = walk_referrers(client, items, 4)

    assert _tree(walk, names) == _expected()  # each repository its own, the third level not reached
    assert {f.found_by for f in walk.found} == {mode}
    assert len(walk.found) == len(_expected())  # each referrer once
    # one read per unique (repository, parent): a, b, then sbom and sig, in both repositories
    reads = ["w/x:a", "w/x:b", "w/x:sbom", "w/x:sig", "w/y:a", "w/y:sbom", "w/y:sig"]
    assert _reads(reg, names) == reads and walk.requests == 7
    assert walk.listed[("w/x", x["b"])] == () and not walk.errors
    assert {names[e.digest] for e in walk.listed[("w/y", y["sbom"])]} == {"sbom_x", "sbom_sig"}

    # a referrer that is a starting subject too is its own: not found again under a (w/x only)
    reg.clear_access_log()
    again = walk_referrers(client, [*items, ("w/x", x["sbom_x"])], 4)
    moved = {("w/x", "a", "sbom", "sbom_x", 2)}
    assert _tree(again, names) == _expected() - moved | {("w/x", "sbom_x", "sbom_x", "deep", 1)}
    assert sorted(_reads(reg, names)) == sorted([*reads, "w/x:sbom_x", "w/x:deep"]) and again.requests == 9
    assert x["sbom_x"] in {e.digest for e in again.listed[("w/x", x["sbom"])]}  # listed all the same


@BOTH
def test_the_parent_filter_and_reads_made_already(registry_matrix):
    """``ask`` as the scan says it (a signature is not asked about its referrers) and as backup
    and replication say it (a parent without a ``sha256-<hex>`` tag is not read); an
    ``answered`` read (the scan's probe) is not made again."""
    reg = registry_matrix
    d = _push(reg)
    names = _names(d)
    client = _client(reg)
    items = [(r, d[r][n]) for r in REPOS for n in ("a", "b")]
    first = client.referrers("w/x", d["w/x"]["a"])
    reg.clear_access_log()
    walk = walk_referrers(client, items, 4, ask=may_have_referrers, answered={items[0]: first})
    assert _tree(walk, names) == _expected(sigs=False)  # sig_y is a referrer of a signature
    assert _reads(reg, names) == ["w/x:b", "w/x:sbom", "w/y:a", "w/y:b", "w/y:sbom"]
    assert walk.requests == 5

    if not reg.capabilities.referrers_api:
        tags = {r: set(images.list_tags(reg.url, r)) for r in REPOS}
        reg.clear_access_log()
        listed = walk_referrers(client, items, 4, ask=lambda r, p, _d: fallback_tag(p) in tags[r])
        assert _tree(listed, names) == _expected()
        assert _reads(reg, names) == ["w/x:a", "w/x:sbom", "w/x:sig", "w/y:a", "w/y:sbom", "w/y:sig"]
        assert listed.requests == 6  # b has no index: not read


@BOTH
def test_a_failed_read_is_collected_or_raised(registry_matrix, fault_proxy_factory):
    """A 500 on the SBOM's referrers in w/x: collected, the walk goes on everywhere else (w/y's
    SBOM still read, w/x's signature too); raised, it names the status. A 404 there is an
    empty answer with ``missing_ok`` (the scan), an error without."""
    reg = registry_matrix
    d = _push(reg)
    names = _names(d)
    sbom = d["w/x"]["sbom"]
    target = f"/referrers/{sbom}" if reg.capabilities.referrers_api else f"/manifests/{fallback_tag(sbom)}"
    proxy = fault_proxy_factory(reg.url)
    client = _client(reg, proxy.url, retries=1)
    items = [(r, d[r]["a"]) for r in REPOS]

    proxy.add_fault("status", status=500, path_regex="^/v2/w/x" + target)
    walk = walk_referrers(client, items, 4, on_error="collect")
    [u] = walk.errors
    assert (u.repo, names[u.subject], names[u.parent]) == ("w/x", "a", "sbom")
    assert isinstance(u.error, RegistryError) and u.error.status == 500
    assert u.why().startswith(f"referrers of {sbom[:19]} unreadable: ") and "500" in u.why()
    assert _tree(walk, names) == _expected() - {
        ("w/x", "a", "sbom", "sbom_x", 2),
        ("w/x", "a", "sbom", "sbom_sig", 2),
    }
    assert ("w/x", sbom) not in walk.listed

    proxy.add_fault("status", status=500, path_regex="^/v2/w/x" + target)
    with pytest.raises(RegistryError) as e:
        walk_referrers(client, items, 4)
    assert e.value.status == 500 and "w/x" in str(e.value)

    if reg.capabilities.referrers_api:  # a plain 404 from the API once it is known to be there
        proxy.add_fault("status", status=404, path_regex="^/v2/w/x" + target, times=2)
        quiet = walk_referrers(client, items, 4, missing_ok=True)
        assert quiet.listed[("w/x", sbom)] == () and not quiet.errors
        loud = walk_referrers(client, items, 4, on_error="collect")
        assert [type(x.error) for x in loud.errors] == [NotFoundError]
    assert proxy.pending_faults() == 0


def test_a_reader_of_its_own(registry, unique_repo):
    """``read``: backup reads each ``sha256-<hex>`` index by the digest its tag points at;
    the walk follows what that read lists, as ``tag-schema``."""
    repo = unique_repo
    a = images.push_image(registry.url, repo, "a", media="oci", seed="walk-reader")
    sbom = images.push_referrer(registry.url, repo, a, artifact_type="application/spdx+json")
    sig = images.push_referrer(registry.url, repo, sbom, artifact_type=SIG)
    tags = {t: images.head_manifest(registry.url, repo, t) for t in images.list_tags(registry.url, repo)}
    client = RegistryClient("t", registry.url)

    def read(r: str, parent: str) -> Referrers:
        m = client.get_manifest(r, tags[fallback_tag(parent)])
        return Referrers(parent, "tag-schema", tuple(m.children), m)

    walk = walk_referrers(
        client, [(repo, a.digest)], 2, ask=lambda _r, p, _d: fallback_tag(p) in tags, read=read
    )
    got = [(f.parent, f.descriptor.digest, f.level, f.found_by) for f in walk.found]
    assert got == [(a.digest, sbom.digest, 1, "tag-schema"), (sbom.digest, sig.digest, 2, "tag-schema")]
    assert walk.requests == 2 and client.referrers_mode is None  # the API never asked
