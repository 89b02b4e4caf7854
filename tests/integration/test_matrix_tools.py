"""The registry matrix with the real OCI 1.1 clients (oras, cosign, regctl): what every registry
the product meets does with referrers, signatures and deletes. These tests document the
behaviour regkeeper relies on (issue 12) and assert it; a change in a pinned tool or registry
shows up here first.

Referrer modes (tests/support/ocitools.py): "referrers-api" (GET /v2/<name>/referrers/<digest>),
"referrers-tag" (the OCI fallback index tagged sha256-<hex>), "cosign-tag" (sha256-<hex>.sig).
"""

import json
import socket
import threading

import pytest
import requests

from tests.support import images
from tests.support.matrix import MATRIX
from tests.support.ocitools import digest_tag, tool_mode

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"

# What each tool run did, per registry: API where the registry serves the referrers API and tells
# the writer so (OCI-Subject), the sha256-<hex> fallback tag everywhere else.
API, TAG = "referrers-api", "referrers-tag"
STEPS = ("oras attach", "cosign sign", "cosign verify", "regctl tree", "oras discover")
EXPECTED_MODES = {name: dict.fromkeys(STEPS, API if name == "referrers-api" else TAG) for name in MATRIX}


def _sbom(name: str) -> dict[str, tuple[bytes, str]]:
    doc = {"spdxVersion": "SPDX-2.3", "name": name, "SPDXID": "SPDXRef-DOCUMENT"}
    return {"sbom.spdx.json": (json.dumps(doc).encode(), SPDX)}


def _step(reg, record: dict, label: str, subject: str, fn, counts: dict | None = None):
    """Run one tool step with a fresh access log and record the referrer mode it used (and, in
    ``counts``, how many requests it sent)."""
    reg.clear_access_log()
    out = fn()
    entries = reg.access_log()
    record[label] = tool_mode(entries, subject)
    if counts is not None:
        counts[label] = len(entries)
    return out


def test_sbom_and_signature_with_the_real_tools(registry_matrix, oras, cosign, regctl, unique_repo, tmp_path):
    reg = registry_matrix
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    subject = reg.ref(unique_repo, img.digest)
    modes: dict[str, str] = {}
    counts: dict[str, int] = {}

    def step(label, fn):
        return _step(reg, modes, label, img.digest, fn, counts)

    # an SBOM through the API where there is one (oras decides from the PUT's OCI-Subject answer)
    sbom = step("oras attach", lambda: oras.attach(subject, SPDX, _sbom("auto")))
    # and one through the fallback tag scheme, forced, on every registry
    sbom_tag = oras.attach(subject, CYCLONEDX, _sbom("tag"), mode="tag")
    tags = images.list_tags(reg.url, unique_repo)
    assert digest_tag(img.digest) in tags

    step("cosign sign", lambda: cosign.sign(subject, mode="oci-1-1"))
    payloads = step("cosign verify", lambda: cosign.verify(subject, mode="oci-1-1"))
    assert [p["critical"]["image"]["docker-manifest-digest"] for p in payloads] == [img.digest]

    regctl.plain_http(reg.host)
    tree = step("regctl tree", lambda: regctl.tree(subject))
    found = dict(tree.referrer_map()[img.digest])
    assert found[sbom["digest"]] == SPDX
    assert found[sbom_tag["digest"]] == CYCLONEDX
    sigs = [d for d, t in found.items() if t == COSIGN_SIG]
    assert len(found) == 3 and len(sigs) == 1

    discovered = step("oras discover", lambda: oras.discover(subject))
    assert dict(oras.referrers(discovered)[img.digest]) == found

    (tmp_path / "modes.json").write_text(
        json.dumps({reg.name: {"modes": modes, "requests": counts}}, indent=2)
    )
    print(f"\n{reg.name}: modes {modes}; requests {counts}")
    assert modes == EXPECTED_MODES[reg.name]


def test_cosign_legacy_signature_is_a_digest_tag(registry_matrix, cosign, regctl, unique_repo):
    """cosign's default (no OCI 1.1): a manifest tagged sha256-<hex>.sig, on every registry; not
    a referrer, so only --digest-tags shows it."""
    reg = registry_matrix
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    subject = reg.ref(unique_repo, img.digest)
    modes: dict[str, str] = {}
    _step(reg, modes, "cosign sign", img.digest, lambda: cosign.sign(subject, mode="legacy"))
    _step(reg, modes, "cosign verify", img.digest, lambda: cosign.verify(subject, mode="legacy"))
    assert modes == {"cosign sign": "cosign-tag", "cosign verify": "cosign-tag"}
    assert f"{digest_tag(img.digest)}.sig" in images.list_tags(reg.url, unique_repo)
    regctl.plain_http(reg.host)
    assert regctl.tree(subject).referrer_map() == {}
    assert regctl.tree(subject, digest_tags=True).digest_tags() == [f"{digest_tag(img.digest)}.sig"]


def test_oras_api_mode_without_the_api_leaves_an_invisible_referrer(registry_matrix, oras, unique_repo):
    """--distribution-spec v1.1-referrers-api trusts the registry: where it has no referrers API,
    the attach succeeds (exit 0) but nothing indexes the referrer, so discovery misses it. The
    manifest is untagged, held by nothing: what regkeeper must count as a dangling referrer."""
    reg = registry_matrix
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    subject = reg.ref(unique_repo, img.digest)
    sbom = oras.attach(subject, SPDX, _sbom("api"), mode="api")
    discovered = dict(oras.referrers(oras.discover(subject)).get(img.digest, []))
    if reg.capabilities.referrers_api:
        assert discovered == {sbom["digest"]: SPDX}
    else:
        assert discovered == {}
        assert images.head_manifest(reg.url, unique_repo, sbom["digest"]) == sbom["digest"]
        assert digest_tag(img.digest) not in images.list_tags(reg.url, unique_repo)


def _artifact_manifest(reg, repo: str, subject: images.PushedImage) -> bytes:
    images.push_blob(reg.url, repo, b"{}")
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "artifactType": SPDX,
            "config": {"mediaType": images.OCI_EMPTY, "digest": images.EMPTY_JSON_DIGEST, "size": 2},
            "layers": [{"mediaType": images.OCI_EMPTY, "digest": images.EMPTY_JSON_DIGEST, "size": 2}],
            "subject": subject.descriptor,
        }
    ).encode()


def test_capabilities_are_what_the_registry_does(registry_matrix, unique_repo):
    reg = registry_matrix
    caps = reg.capabilities
    img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
    base = f"{reg.url}/v2/{unique_repo}"

    # a referrer PUT: OCI-Subject only where the referrers API is served; the manifest (with its
    # subject and artifactType) is stored byte for byte everywhere
    body = _artifact_manifest(reg, unique_repo, img)
    digest = images.sha256_digest(body)
    r = requests.put(f"{base}/manifests/{digest}", data=body, headers={"Content-Type": images.OCI_MANIFEST})
    assert r.status_code == 201
    assert (r.headers.get("OCI-Subject") == img.digest) is caps.referrers_api
    assert images.get_manifest(reg.url, unique_repo, digest)[0] == body

    r = requests.get(f"{base}/referrers/{img.digest}", timeout=10)
    if caps.referrers_api:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == images.OCI_INDEX
        assert [(d["digest"], d["artifactType"]) for d in r.json()["manifests"]] == [(digest, SPDX)]
        r = requests.get(f"{base}/referrers/{img.digest}?artifactType=other%2Ftype", timeout=10)
        assert r.json()["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"
    else:
        assert r.status_code == 404

    assert unique_repo in images.catalog(reg.url)

    # DELETE by tag, then by digest
    images.tag_existing(reg.url, unique_repo, "extra", img.digest)
    r = requests.delete(f"{base}/manifests/extra", timeout=10)
    # distribution 2.8 only deletes by digest: a tag is an invalid digest to it
    assert r.status_code == (202 if caps.delete_tag else 400), r.text
    assert images.delete_manifest(reg.url, unique_repo, img.digest) == 202
    assert images.head_manifest(reg.url, unique_repo, img.digest) is None
    assert images.list_tags(reg.url, unique_repo) == []

    if caps.garbage_collect:
        res = reg.garbage_collect(dry_run=True)
        assert res.returncode == 0, res.stderr
    else:
        with pytest.raises(NotImplementedError):
            reg.garbage_collect()

    # a restart keeps the content where storage is persistent; the memory registry starts empty
    images.push_image(reg.url, unique_repo, "v2", media="oci", seed=unique_repo + "2")
    reg.stop()
    reg.start()
    assert (images.list_tags(reg.url, unique_repo) == ["v2"]) is caps.persistent


def test_raw_go_containerregistry_gaps(referrers_registry_factory, oras, unique_repo):
    """pkg/registry v0.22.1 as it is (-spec-fixes=false): no OCI-Subject on the PUT, so oras falls
    back to the sha256-<hex> tag although the API exists, and the API reports the config's
    mediaType as artifactType. Why the matrix runs the helper with its spec fixes on."""
    raw = referrers_registry_factory(spec_fixes=False)
    img = images.push_image(raw.url, unique_repo, "v1", media="oci", seed=unique_repo)
    subject = f"{raw.host}/{unique_repo}@{img.digest}"
    raw.clear_access_log()
    sbom = oras.attach(subject, SPDX, _sbom("raw"))
    assert tool_mode(raw.access_log(), img.digest) == TAG
    assert oras.referrers(oras.discover(subject))[img.digest] == [(sbom["digest"], images.OCI_EMPTY)]


class _ProxyRecorder:
    """A loopback "proxy" that records the first line of every request (CONNECT host:443...)
    and closes: what a tool tries to reach beyond 127.0.0.1 (Go never proxies loopback)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                self.seen.append(conn.recv(4096).decode(errors="replace").split("\r\n", 1)[0])

    def close(self) -> None:
        self.sock.close()


def test_the_tools_reach_nothing_beyond_loopback(
    referrers_registry_factory, oras, cosign, regctl, unique_repo
):
    reg = referrers_registry_factory()
    proxy = _ProxyRecorder()
    try:
        for tool in (oras, cosign, regctl):
            tool.proxy_url = proxy.url
        img = images.push_image(reg.url, unique_repo, "v1", media="oci", seed=unique_repo)
        subject = f"{reg.host}/{unique_repo}@{img.digest}"
        oras.attach(subject, SPDX, _sbom("net"))
        oras.discover(subject)
        for mode in ("legacy", "oci-1-1"):
            cosign.sign(subject, mode=mode)
            cosign.verify(subject, mode=mode)
        regctl.plain_http(reg.host)
        regctl.tree(subject, digest_tags=True)
    finally:
        proxy.close()
    assert proxy.seen == []
