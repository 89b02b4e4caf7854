"""One backup batch: scan some repositories and copy to the target what it lacks.

The scan records, per repository, the tags and every manifest reachable from them (described:
media type, children, config and layer descriptors). Manifests and config blobs the target does
not hold yet (by key and size) are fetched, digest-checked and uploaded; a manifest deleted
mid-run (404) is left out with the indexes and tags over it. Layer data is never copied.
A tag, manifest or config that cannot be read (403, 500, retries exhausted...) does not stop the
batch: everything else is copied, then the batch fails naming exactly those tags and digests.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from ..cache import verify_digest
from ..errors import NotFoundError
from ..inventory import scan
from ..oci import RegistryClient
from ..util import human_bytes
from .referrers import drop_missing, record_referrers
from .snapshot import list_existing, object_key
from .store import BackupError, ObjectStore

CONFIG_MAX_BYTES = 8 * 1024 * 1024  # configs larger than this are described, not copied


@dataclass
class BatchResult:
    repositories: dict[str, dict] = field(default_factory=dict)  # repo -> {tags, manifests, errors}
    manifests: dict[str, dict] = field(default_factory=dict)  # digest -> description
    written: dict[str, int] = field(default_factory=dict)  # key -> bytes uploaded by us
    would_write: list[str] = field(default_factory=list)  # dry run: keys to upload
    errors: list[str] = field(default_factory=list)
    requests: dict = field(default_factory=dict)
    seconds: float = 0.0
    referrers_mode: str | None = None  # the registry's: "api" | "tag-schema"


def _describe(info) -> dict:
    """Snapshot description of one manifest (from an inventory ManifestInfo)."""
    config = None
    layers = []
    for b in info.blobs:
        d = {"digest": b.digest, "size": b.size, "media_type": b.media_type}
        if config is None and info.config_digest and b.digest == info.config_digest:
            config = d
        else:
            layers.append(d)
    return {
        "media_type": info.media_type,
        "size": info.size,
        "kind": info.kind,
        "children": [c.digest for c in info.children],
        "config": config,
        "layers": layers,
        "subject": info.subject,
    }


def backup_batch(
    client: RegistryClient,
    store: ObjectStore,
    repositories: list[str],
    *,
    existing: dict[str, int] | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
) -> BatchResult:
    """Scan these repositories and upload the manifests and configs the target lacks.

    ``existing`` is the run's LIST of the target (``begin_backup``); it is updated in place
    with what this batch wrote, so later batches of the same process skip it too. A tag that
    disappears mid-run (404) is left out and noted; any other failure raises, and no index is
    written for the run. ``dry_run``: scan and compare only; ``would_write`` lists the keys."""
    t0 = time.perf_counter()
    before = Counter(client.stats)
    if existing is None:
        existing = list_existing(store)
    res = BatchResult()
    unreadable: list = []
    inv = scan(
        client,
        repositories=list(repositories),
        created="never",
        concurrency=client.concurrency,
        read_errors=unreadable,
    )
    need_manifest, need_config = _record_repositories(inv, res)
    for name, rec in res.repositories.items():  # referrers: see referrers.py
        record_referrers(
            client,
            name,
            rec,
            res.manifests,
            (need_manifest, need_config),
            res.errors,
            concurrency,
            CONFIG_MAX_BYTES,
        )
    todo = _lacking(existing, need_manifest, need_config)
    if dry_run:
        res.would_write = [object_key(kind, d) for kind, d, _repo in todo]
        todo = []
    failures = [
        f"manifest {ref} of {', '.join(_users(res, ref)) or repo}: {err}"
        if ref.startswith("sha256:")
        else f"{repo}:{ref}: {err}"
        for repo, ref, err in sorted(unreadable, key=lambda x: x[:2])
    ]
    failures += _upload(client, store, todo, existing, res, concurrency)
    for rec in res.repositories.values():
        drop_missing(rec, res.manifests)
    res.referrers_mode = client.referrers_mode
    if failures:
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise BackupError(
            f"backup of {client.name}: {len(failures)} item(s) could not be backed up "
            f"(the others were copied to {store.url}): " + "; ".join(failures[:5]) + more
        )
    after = client.stats
    res.requests = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _record_repositories(
    inv, res: BatchResult
) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
    """What each repository holds: tags, and every manifest reachable from them (described in
    ``res``). Returns the manifests and configs to have on the target: digest -> (repo to
    fetch from, size)."""
    need_manifest: dict[str, tuple[str, int]] = {}  # digest -> (repo to fetch from, size)
    need_config: dict[str, tuple[str, int]] = {}
    for name in sorted(inv.repositories):
        r = inv.repositories[name]
        rec = {"tags": dict(sorted(r.tags.items())), "manifests": [], "errors": list(r.errors)}
        res.errors += [f"{name}: {e}" for e in r.errors]
        reachable: list[str] = []
        for info in r.closure(r.tags.values()):  # dangling children are noted in r.errors by the scan
            d = info.digest
            reachable.append(d)
            res.manifests.setdefault(d, _describe(info))
            need_manifest.setdefault(d, (name, info.size))
            cfg = res.manifests[d]["config"]
            if cfg:
                if cfg["size"] <= CONFIG_MAX_BYTES:
                    need_config.setdefault(cfg["digest"], (name, cfg["size"]))
                else:
                    res.errors.append(
                        f"{name}: config {cfg['digest']} of {d} is "
                        f"{human_bytes(cfg['size'])}: described, not copied"
                    )
        rec["manifests"] = sorted(reachable)
        res.repositories[name] = rec
    return need_manifest, need_config


def _lacking(
    existing: dict[str, int],
    need_manifest: dict[str, tuple[str, int]],
    need_config: dict[str, tuple[str, int]],
) -> list[tuple[str, str, str]]:
    """(kind, digest, repo) of what the target lacks (a size mismatch counts as lacking)."""
    todo = []
    for d, (repo, size) in sorted(need_manifest.items()):
        k = object_key("manifests", d)
        if existing.get(k) != size:
            todo.append(("manifests", d, repo))
    for d, (repo, size) in sorted(need_config.items()):
        k = object_key("blobs", d)
        if existing.get(k) != size:
            todo.append(("blobs", d, repo))
    return todo


def _copy_object(client: RegistryClient, store: ObjectStore, item: tuple[str, str, str]) -> tuple[str, int]:
    """Fetch one manifest or config from the registry, check its digest, put it on the target."""
    kind, digest, repo = item
    if kind == "manifests":
        data = client.get_manifest(repo, digest).raw  # disk cache first; digest-checked
    else:
        data = client.get_blob(repo, digest, cache=True, max_bytes=CONFIG_MAX_BYTES)
    if not verify_digest(digest, data):
        raise BackupError(f"{kind[:-1]} {digest} from {repo}: content does not match its digest")
    key = object_key(kind, digest)
    store.put(key, data)
    return key, len(data)


_WHAT = {"manifests": "manifest", "blobs": "config blob"}


def _upload(
    client: RegistryClient,
    store: ObjectStore,
    todo: list[tuple[str, str, str]],
    existing: dict[str, int],
    res: BatchResult,
    concurrency: int,
) -> list[str]:
    """Copy ``todo`` to the target; 404s are left out (and what depends on them). Returns the
    other failures, each naming the object and the tags that need it."""
    failures = []
    gone: dict[str, str] = {}
    for (kind, digest, repo), out, err in client.map(
        lambda it: _copy_object(client, store, it), todo, concurrency
    ):
        if isinstance(err, NotFoundError):
            gone[digest] = f"{_WHAT[kind]} {digest} disappeared during the backup (404)"
        elif err is not None:
            failures.append(f"{_WHAT[kind]} {digest} of {', '.join(_users(res, digest)) or repo}: {err}")
        elif out is not None:  # copied: (object key, size)
            res.written[out[0]] = out[1]
            existing[out[0]] = out[1]
    if gone:
        _drop_gone(res, gone)
    return failures


def _users(res: BatchResult, digest: str) -> list[str]:
    """``repo:tag`` of every tag whose closure holds manifest or config ``digest``."""

    def reaches(d: str, depth: int = 0) -> bool:
        m = res.manifests.get(d)
        if d == digest:
            return True
        if m is None or depth > 4:
            return False
        if m["config"] and m["config"]["digest"] == digest:
            return True
        return any(reaches(c, depth + 1) for c in m["children"])

    return [
        f"{name}:{tag}"
        for name, rec in sorted(res.repositories.items())
        for tag, d in sorted(rec["tags"].items())
        if reaches(d)
    ]


def _drop_gone(res: BatchResult, why: dict[str, str]) -> None:
    """Leave out manifests deleted mid-run, the indexes over them, and their tags (each named
    in ``res.errors`` with why: ``why`` maps the digests that answered 404 to the reason)."""
    for digest, reason in sorted(why.items()):
        res.errors += [f"{user}: left out: {reason}" for user in _users(res, digest)] or [
            f"{reason}: left out"
        ]
    gone = set(why)
    changed = True
    while changed:
        changed = False
        for d, m in res.manifests.items():
            if d in gone:
                continue
            if any(c in gone for c in m["children"]) or (m["config"] and m["config"]["digest"] in gone):
                gone.add(d)
                changed = True
    for d in list(res.manifests):
        if d in gone:
            del res.manifests[d]
    for rec in res.repositories.values():
        for t, d in list(rec["tags"].items()):
            if d in gone:
                del rec["tags"][t]
        rec["manifests"] = [d for d in rec["manifests"] if d not in gone]
