"""The protocol minimum of a replication run, in requests per tag, read from the source with
the test stack's own client (bench/replicate.py compares regkeeper's counts with it)."""

import json

from tests.support import images


def protocol_minimum(url: str, repos: list[str]) -> dict:
    """Requests per tag that any replicator needs, read from the source with the test stack's
    own client. cold (empty target): source catalog + a tags list per repository + a GET per
    tag and per index child + a GET per distinct blob (a blob in several repositories is read
    once and mounted); target a tags list per repository + per distinct blob one upload
    (POST + PUT, or POST + PATCHes + PUT above the monolithic size) in its first repository
    and a mount POST in each other one + a PUT per index child and per tag. warm (nothing to
    do): catalog + tags lists + a HEAD per tag on the source, tags lists + a HEAD per tag on
    the target."""
    import math

    from regkeeper.oci.transfer import CHUNK_SIZE, MONOLITHIC_MAX

    tags = children = 0
    blobs: dict[str, tuple[int, set[str]]] = {}  # digest -> (size, repositories)

    def add_blobs(repo: str, doc: dict) -> None:
        for d in [doc.get("config")] + list(doc.get("layers") or []):
            if d:
                blobs.setdefault(d["digest"], (int(d["size"]), set()))[1].add(repo)

    for repo in repos:
        for tag in images.list_tags(url, repo, verify=False):
            tags += 1
            doc = json.loads(images.get_manifest(url, repo, tag, verify=False)[0])
            for ch in doc.get("manifests") or []:
                children += 1
                add_blobs(repo, json.loads(images.get_manifest(url, repo, ch["digest"], verify=False)[0]))
            add_blobs(repo, doc)
    upload = sum(
        2 if size <= MONOLITHIC_MAX else 2 + math.ceil(size / CHUNK_SIZE) for size, _ in blobs.values()
    )
    mounts = sum(len(where) - 1 for _, where in blobs.values())
    r = len(repos)
    return {
        "tags": tags,
        "cold_source": (1 + r + tags + children + len(blobs)) / tags,
        "cold_target": (r + upload + mounts + children + tags) / tags,
        "warm_source": (1 + r + tags) / tags,
        "warm_target": (r + tags) / tags,
    }


def per_tag(requests: dict, tags: int) -> float:
    return sum(v for k, v in requests.items() if k != "retries") / tags
