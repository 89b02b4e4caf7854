"""Inventory-based figures: logical usage per repository (unique vs shared blob bytes), the
deduplicated size, image counts, and pull-latency probes (which images to pull, how long it takes).
"""

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from ..models import Inventory

LOGICAL_COLUMNS = ["repository", "tags", "manifests", "unique_bytes", "shared_bytes", "total_bytes"]


def _repo_blobs(repo) -> dict[str, int]:
    """digest -> size of every blob a repository references: config + layers of each manifest,
    and the manifests themselves (distribution stores them as blobs too)."""
    out: dict[str, int] = {}
    for d, m in repo.manifests.items():
        out[d] = m.size
        for b in m.blobs:
            out[b.digest] = b.size
    return out


def logical_usage(inventory: "Inventory") -> "pd.DataFrame":
    """Per repository: tags, manifests, and blob bytes split into ``unique_bytes`` (blobs only
    this repository references) and ``shared_bytes`` (blobs other repositories reference too);
    ``total_bytes`` = both. Sorted by total_bytes, largest first."""
    import pandas as pd

    per_repo = {name: _repo_blobs(r) for name, r in inventory.repositories.items()}
    refcount: dict[str, int] = {}
    for blobs in per_repo.values():
        for d in blobs:
            refcount[d] = refcount.get(d, 0) + 1
    rows = []
    for name, r in inventory.repositories.items():
        blobs = per_repo[name]
        unique = sum(s for d, s in blobs.items() if refcount[d] == 1)
        shared = sum(s for d, s in blobs.items() if refcount[d] > 1)
        rows.append(
            {
                "repository": name,
                "tags": len(r.tags),
                "manifests": len(r.manifests),
                "unique_bytes": unique,
                "shared_bytes": shared,
                "total_bytes": unique + shared,
            }
        )
    df = pd.DataFrame(rows, columns=LOGICAL_COLUMNS)
    if not df.empty:
        df = df.sort_values(["total_bytes", "repository"], ascending=[False, True], ignore_index=True)
    return df.astype({c: "int64" for c in LOGICAL_COLUMNS[1:]})


def deduplicated_bytes(inventory) -> int:
    """Bytes of all distinct blobs (and manifests) the registry's tags reach: what the storage
    would hold after a garbage-collect."""
    seen: dict[str, int] = {}
    for r in inventory.repositories.values():
        seen.update(_repo_blobs(r))
    return sum(seen.values())


def image_counts(inventory) -> tuple[int, int]:
    """``(images, manifests)``: tags across repositories, distinct manifests per repository."""
    return inventory.tag_count, sum(len(r.manifests) for r in inventory.repositories.values())


# --------------------------------------------------------------------------- pull latency


def measure_pull_latency(client, repository: str, tag: str) -> float:
    """Seconds to GET ``repository:tag``'s manifest (by tag, so no digest cache answers) and,
    for an image, its config blob. Duck-typed: needs ``get_manifest(repo, ref)`` and
    ``get_blob(repo, digest)`` (or ``get_blob_stream``)."""
    t0 = time.perf_counter()
    m = client.get_manifest(repository, tag)
    cfg = getattr(m, "config", None)
    if cfg is not None:
        if hasattr(client, "get_blob"):
            client.get_blob(repository, cfg.digest)
        else:
            stream = client.get_blob_stream(repository, cfg.digest)
            for _ in stream:
                pass
    return time.perf_counter() - t0


def pick_pull_samples(inventory, n: int = 3) -> list[tuple[str, str]]:
    """Up to ``n`` ``(repository, tag)`` pairs of the smallest single-platform images (one per
    repository), the cheapest probes for :func:`measure_pull_latency`."""
    best: list[tuple[int, str, str]] = []
    for name, r in inventory.repositories.items():
        cands = []
        for tag, d in r.tags.items():
            m = r.manifests.get(d)
            if m is not None and m.kind == "image" and m.config_digest:
                cfg_size = next((b.size for b in m.blobs if b.digest == m.config_digest), 0)
                cands.append((m.size + cfg_size, name, tag))
        if cands:
            best.append(min(cands))
    best.sort()
    return [(repo, tag) for _, repo, tag in best[:n]]
