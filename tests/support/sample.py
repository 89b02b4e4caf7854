"""A registry sample for whole-job runs under faults: a few dozen tags of every kind the jobs
handle, pushed with the independent test client (tests/support/images.py), and the registry's
own answer of what it holds (``truth``), read without any proxy in between."""

import hashlib
import os
from pathlib import Path

from tests.support import images

V = {"verify": False}
BIG = 6 * 1024 * 1024  # > 4 MiB: the chunked upload path


def fill(url: str) -> dict:
    """29 tags: 4 repositories x 5 tags sharing a base layer (team/app-000N, build-0000 oldest),
    a multi-arch OCI index and a Docker manifest list (untagged children), cosign signature and
    attestation on the index and a signature on an image, an OCI referrer (with its fallback
    referrers tag), a tag alias, and a 6 MiB single-layer image."""
    pushed = images.push_many(
        url,
        n_repos=4,
        tags_per_repo=5,
        prefix="team/app",
        verify=False,
        base_layer_size=512 * 1024,
        layer_size=4096,
        seed=21,
    )
    idx = images.push_index(url, "multi/oci", "v1", verify=False, seed="fi1")
    lst = images.push_index(
        url,
        "multi/docker",
        "v1",
        media="docker",
        verify=False,
        seed="fi2",
        platforms=(("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le")),
    )
    sig_idx = images.push_signature(url, "multi/oci", idx.digest, "sig", verify=False)
    att_idx = images.push_signature(url, "multi/oci", idx.digest, "att", verify=False)
    img = images.push_image(url, "signed/app", "v1", media="oci", verify=False, seed="fs1")
    sig_img = images.push_signature(url, "signed/app", img.digest, "sig", verify=False)
    ref = images.push_referrer(url, "signed/app", img, verify=False)
    images.tag_existing(url, "signed/app", "latest", img.digest, verify=False)
    layer = (hashlib.sha256(b"big").digest() * (BIG // 32 + 1))[:BIG]
    big = images.push_image(url, "big/app", "v1", layers=[layer], verify=False, seed="fb")
    return {
        "many": pushed,
        "index": idx,
        "list": lst,
        "sig_idx": sig_idx,
        "att_idx": att_idx,
        "image": img,
        "sig_img": sig_img,
        "referrer": ref,
        "big": big,
    }


def truth(url: str) -> dict[tuple[str, str], str]:
    """(repository, tag) -> digest, as the registry itself answers."""
    return {
        (repo, tag): images.head_manifest(url, repo, tag, **V)
        for repo in images.catalog(url, **V)
        for tag in images.list_tags(url, repo, **V)
    }


def age(root, repo: str, tags, when: float) -> None:
    """Set the push time of tags (the tag link's mtime in filesystem storage) to ``when``."""
    for tag in tags:
        link = (
            Path(root) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link"
        )
        os.utime(link, (when, when))


def resolves_with_blobs(url: str, repo: str, ref: str) -> list[str]:
    """Problems reading ``repo@ref`` straight from the registry: its manifest, every child of an
    index, and every config and layer blob (HEAD). Empty when everything answers."""
    import json

    import requests

    problems = []
    try:
        raw, _mt, _dg = images.get_manifest(url, repo, ref, **V)
    except Exception as e:  # noqa: BLE001 - reported
        return [f"{repo}@{ref}: {e}"]
    doc = json.loads(raw)
    for child in doc.get("manifests") or []:
        problems += resolves_with_blobs(url, repo, child["digest"])
    for desc in [doc.get("config")] + list(doc.get("layers") or []):
        if desc:
            r = requests.head(f"{url}/v2/{repo}/blobs/{desc['digest']}", timeout=10)
            if r.status_code != 200:
                problems.append(f"{repo}@{ref}: blob {desc['digest']}: HTTP {r.status_code}")
    return problems
