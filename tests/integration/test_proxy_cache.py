"""A real distribution in proxy mode in front of a local upstream registry: what the cache
holds, read from its storage, and eviction by pulledWithin and by maxBytes (least recently used
first) inside the reclaim window, measured on the storage; an image in use in Kubernetes is
never evicted, and a pull through the cache afterwards re-fetches from the upstream."""

import pytest
import requests

from regkeeper.context import RunContext
from regkeeper.proxycache import evict, plan_cache, verify_cache
from regkeeper.prune import read_kubernetes
from tests.support.proxycache import LAYER, ProxyStack, filled_stack


@pytest.fixture
def stack(tmp_path):
    with filled_stack(tmp_path) as s:
        yield s


def _plan(s, cfg):
    ctx = RunContext.load(cfg)
    k = read_kubernetes(ctx, "cache")
    inv, plan = plan_cache(ctx, "cache", in_use=k.usage, notes=k.notes)
    return ctx, inv, plan


def _actions(plan) -> dict[str, tuple[str, str]]:
    return {f"{d.image.repository}:{' '.join(d.image.tags)}": (d.action, d.rule) for d in plan.decisions}


def test_inventory_and_capacity_from_the_cache_storage(stack):
    cfg = stack.config()
    ctx, inv, plan = _plan(stack, cfg)
    assert inv.repositories == ["team/app", "team/web"]
    assert sorted(f"{i.repository}:{t}" for i in inv.images for t in i.tags) == [
        "team/app:hot",
        "team/app:inuse",
        "team/app:stale",
        "team/web:a",
        "team/web:b",
    ]
    assert {i.digest for i in inv.images} == set(stack.digests.values())
    # six distinct layers of LAYER bytes, plus configs and manifests
    assert 6 * LAYER < inv.blob_bytes < 6 * LAYER + 20_000
    assert 0 <= plan.used_bytes - stack.storage_bytes() < 20_000  # + the scheduler's state file
    web = {r["repository"]: r for r in inv.per_repository()}["team/web"]
    assert web["images"] == 2 and 3 * LAYER < web["bytes"] < 3 * LAYER + 10_000  # the shared layer once
    # no rule configured: nothing is evicted
    assert all(d.action == "keep" for d in plan.decisions)


def test_evicts_by_pulled_within_and_keeps_what_is_in_use_or_pulled(stack):
    cfg = stack.config(kube=stack.kubernetes("team/app:inuse"), pulledWithin="30d")
    ctx, inv, plan = _plan(stack, cfg)
    assert _actions(plan) == {
        "team/app:stale": ("evict", "pulledWithin"),
        "team/app:hot": ("keep", ""),
        "team/app:inuse": ("keep", "in use"),  # cached 60 days ago, never pulled: in use wins
        "team/web:a": ("keep", ""),
        "team/web:b": ("keep", ""),
    }
    stale = stack.digests["team/app:stale"]
    gone = {b for d in plan.evicted() for b in d.image.blobs}
    before = stack.storage_bytes()
    unlinked, window = evict(ctx, "cache", plan)
    assert window.error is None and window.ran, window.error
    assert unlinked.evicted == [("team/app", stale)]
    assert stack.ctl.calls == ["readonly", "readwrite"]
    freed = before - stack.storage_bytes()
    assert freed >= LAYER and window.bytes_freed >= LAYER  # measured on the storage
    assert not stack.linked("team/app", "stale") and not any(stack.has_blob(b) for b in gone)
    for ref in ("team/app:hot", "team/app:inuse", "team/web:a", "team/web:b"):
        repo, tag = ref.split(":")
        assert stack.linked(repo, tag), ref
    kept = [b for d in plan.kept() for b in d.image.blobs]
    assert all(stack.has_blob(b) for b in kept)
    assert verify_cache(ctx, "cache", inv, plan).ok
    # a pull through the cache afterwards is fetched from the upstream again
    stack.pull("team/app:stale")
    assert stack.linked("team/app", "stale") and all(stack.has_blob(b) for b in gone)


def test_evicts_least_recently_used_until_under_max_bytes(stack):
    used = stack.storage_bytes()
    cap = used - int(1.5 * LAYER)  # two unique layers must go
    cfg = stack.config(kube=stack.kubernetes("team/app:inuse"), maxBytes=cap)
    ctx, inv, plan = _plan(stack, cfg)
    # least recently used first: stale (pulled 40 days ago), then web:a (10 days); inuse is
    # older than both (cached 60 days ago, never pulled) but in use
    assert _actions(plan) == {
        "team/app:stale": ("evict", "maxBytes LRU"),
        "team/web:a": ("evict", "maxBytes LRU"),
        "team/app:inuse": ("keep", "in use"),
        "team/app:hot": ("keep", ""),
        "team/web:b": ("keep", ""),
    }
    web_a = next(d for d in plan.evicted() if d.image.repository == "team/web")
    assert LAYER <= web_a.bytes_freed < 2 * LAYER  # the layer it shares with web:b is not freed
    assert plan.bytes_after <= cap
    unlinked, window = evict(ctx, "cache", plan)
    assert window.error is None and len(unlinked.evicted) == 2
    assert stack.storage_bytes() <= cap
    assert stack.linked("team/app", "inuse") and stack.linked("team/web", "b")
    assert verify_cache(ctx, "cache", inv, plan).ok
    # the shared layer is still served from the cache for web:b, and web:a comes back
    stack.pull("team/web:b")
    stack.pull("team/web:a")
    assert stack.linked("team/web", "a")


def test_a_proxy_answers_delete_with_405(stack):
    dg = stack.digests["team/app:hot"]
    r = requests.delete(f"{stack.cache.url}/v2/team/app/manifests/{dg}", timeout=10)
    assert r.status_code == 405


def test_without_a_reclaim_window_nothing_is_evicted(stack):
    import yaml

    from regkeeper.errors import RefusedError

    cfg = stack.config(pulledWithin="30d")
    doc = yaml.safe_load(cfg.read_text())
    doc["mirrorRepositories"][0]["reclaim"] = "none"
    cfg.write_text(yaml.safe_dump(doc))
    ctx, inv, plan = _plan(stack, cfg)
    # the plan would evict stale and the (unprotected: no kubernetes section) never-pulled inuse
    assert {d.image.tags[0] for d in plan.evicted()} == {"stale", "inuse"}
    before = stack.storage_bytes()
    with pytest.raises(RefusedError, match=r"reclaim\.mode"):
        evict(ctx, "cache", plan)
    assert stack.storage_bytes() == before and stack.linked("team/app", "stale")
    assert stack.ctl.calls == []


def test_cli_inventory_of_the_cache(stack):
    import json
    import subprocess
    import sys

    cfg = stack.config(maxBytes="1Gi")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "inventory",
            "--config",
            str(cfg),
            "--registry",
            "cache",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert 0 <= doc["storage_bytes"] - stack.storage_bytes() < 20_000  # + the scheduler's state
    assert {(r["repository"], r["tags"]) for r in doc["images"]} == {
        ("team/app", "stale"),
        ("team/app", "hot"),
        ("team/app", "inuse"),
        ("team/web", "a"),
        ("team/web", "b"),
    }
    assert "2 repositories, 5 images" in out.stderr
    # --include / --exclude select repositories as for any registry
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "inventory", "--config", str(cfg), "--registry", "cache"]
        + ["--format", "csv", "--include", "team/**", "--exclude", "team/web"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert {line.split(",")[0] for line in out.stdout.splitlines()[1:]} == {"team/app"}
    assert "1 repositories, 3 images" in out.stderr


def test_pulls_through_the_cache_are_recorded_and_drive_eviction(tmp_path):
    """The cache's own notifications feed the pull store: a node's pull (curl with a containerd
    user agent) keeps its image; an image only a pre-warming job fetched (skopeo, excluded) and
    cached 60 days ago is evicted."""
    from datetime import UTC, datetime, timedelta

    from regkeeper.pulls.store import PullStore
    from tests.support.procs import wait_until
    from tests.support.proxycache import NAME, layer

    s = ProxyStack(tmp_path, notify=True)
    try:
        cfg = s.config(pulledWithin="30d")
        s.start_receiver(cfg)
        s.push("team/app", "used", [layer(LAYER, 7)])
        s.push("team/app", "warm", [layer(LAYER, 8)])
        for tag in ("used", "warm"):
            s.pull(f"team/app:{tag}")  # skopeo: pre-warming, not counted
            s.cached_at("team/app", tag, datetime.now(UTC) - timedelta(days=60))
        s.pull_manifest("team/app:used")
        store = PullStore(s.store_url)
        try:
            wait_until(lambda: len(store.rows(NAME)) >= 1, timeout=60, what="the pull event")
            rows = store.rows(NAME)
            store.mark_collection_start(NAME, datetime.now(UTC) - timedelta(days=40))
        finally:
            store.close()
        assert [(r["repository"], r["digest"]) for r in rows] == [("team/app", s.digests["team/app:used"])]
        ctx, inv, plan = _plan(s, cfg)
        assert _actions(plan) == {"team/app:used": ("keep", ""), "team/app:warm": ("evict", "pulledWithin")}
        assert next(d for d in plan.kept()).reason.startswith("pulled ")
        unlinked, window = evict(ctx, "cache", plan)
        assert window.ran and unlinked.evicted == [("team/app", s.digests["team/app:warm"])]
        assert s.linked("team/app", "used") and not s.linked("team/app", "warm")
    finally:
        s.stop()


def test_the_cache_must_restart_after_garbage_collect(stack):
    """Found for real, and why readWrite must restart the cache: with distribution's in-memory
    blob descriptor cache, a cache that was not restarted still believes the evicted blobs are
    local, and a pull of the evicted image fails; after a restart it is fetched again."""
    import subprocess

    import yaml

    cfg = stack.config(pulledWithin="30d")
    doc = yaml.safe_load(cfg.read_text())
    gc_argv = doc["mirrorRepositories"][0]["reclaim"]["garbageCollect"]
    doc["mirrorRepositories"][0]["reclaim"] = {
        "mode": "command",
        "garbageCollect": gc_argv,
        "liveGarbageCollect": True,  # no readOnly / readWrite: the cache is never restarted
    }
    cfg.write_text(yaml.safe_dump(doc))
    ctx, inv, plan = _plan(stack, cfg)
    assert {d.image.tags[0] for d in plan.evicted()} == {"stale", "inuse"}
    unlinked, window = evict(ctx, "cache", plan)
    assert window.ran and len(unlinked.evicted) == 2
    with pytest.raises(subprocess.CalledProcessError):
        stack.pull("team/app:stale")
    stack.cache.restart()
    stack.pull("team/app:stale")
    assert stack.linked("team/app", "stale")


def test_an_s3_backed_cache_is_listed_and_evicted_by_max_bytes(tmp_path, moto_server, s3_bucket):
    """The cache on S3 (moto): inventory from the bucket, maxBytes evicts the least recently
    cached image not in use (S3 LastModified cannot be aged: the images are cached a second
    apart), garbage-collect frees it, the in-use one (cached first) stays."""
    import time

    from tests.support.proxycache import layer

    s3 = {
        "endpoint": moto_server.endpoint,
        "bucket": s3_bucket,
        "access_key": moto_server.access_key,
        "secret_key": moto_server.secret_key,
        "region": moto_server.region,
    }
    s = ProxyStack(tmp_path, s3=s3)
    try:
        for i, tag in enumerate(("inuse", "old", "new")):
            s.push("team/app", tag, [layer(LAYER, 20 + i)])
            s.pull(f"team/app:{tag}")
            time.sleep(1.1)
        used = s.storage_bytes()
        cfg = s.config(kube=s.kubernetes("team/app:inuse"), maxBytes=used - LAYER // 2)
        ctx, inv, plan = _plan(s, cfg)
        assert inv.root == f"s3://{s3_bucket}/docker/registry/v2"
        assert sorted(t for i in inv.images for t in i.tags) == ["inuse", "new", "old"]
        assert 3 * LAYER < inv.blob_bytes < 3 * LAYER + 10_000
        assert _actions(plan) == {
            "team/app:inuse": ("keep", "in use"),
            "team/app:old": ("evict", "maxBytes LRU"),
            "team/app:new": ("keep", ""),
        }
        old_layer = s.pushed["team/app:old"].layer_digests[0]
        unlinked, window = evict(ctx, "cache", plan)
        assert window.ran and window.error is None, window.error
        assert unlinked.evicted == [("team/app", s.digests["team/app:old"])]
        assert not s.linked("team/app", "old") and not s.has_blob(old_layer)
        assert s.linked("team/app", "inuse") and s.linked("team/app", "new")
        assert used - s.storage_bytes() >= LAYER
        assert verify_cache(ctx, "cache", inv, plan).ok
        s.pull("team/app:old")
        assert s.linked("team/app", "old")
    finally:
        s.stop()


def test_an_s3_cache_whose_bucket_is_missing_fails_naming_the_bucket(moto_server, s3_bucket):
    """A listing failure (here: no such bucket) is a RegkeeperError naming bucket, prefix and
    code, never botocore's bare ClientError, and carries no key."""
    from regkeeper.errors import RegkeeperError
    from regkeeper.proxycache import read_cache
    from regkeeper.storage import S3Storage, s3_client

    client = s3_client(moto_server.endpoint, moto_server.access_key, moto_server.secret_key)
    gone = S3Storage(client, s3_bucket + "-gone")
    with pytest.raises(RegkeeperError, match="NoSuchBucket"):
        read_cache(gone)  # its first check
    # every listing (what unlink re-reads inside the window, the tags, the repositories)
    for read in (gone.repositories, lambda: gone.revision_times("team/app"), lambda: gone.tag_digests("a")):
        with pytest.raises(RegkeeperError) as ei:
            read()
        msg = str(ei.value)
        assert f"s3://{s3_bucket}-gone/docker/registry/v2/repositories/" in msg and "NoSuchBucket" in msg
        assert moto_server.secret_key not in msg and type(ei.value) is RegkeeperError
    # the bucket that exists: an empty cache, listed without error
    assert read_cache(S3Storage(client, s3_bucket)).images == []


def test_cli_inventory_of_a_cache_whose_storage_is_wrong_names_the_key(tmp_path):
    """One last line naming the registry and proxyCache.storage (not storage.path), exit 1."""
    import subprocess
    import sys

    from tests.support.rkconfig import write_config

    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [
            {
                "name": "cache",
                "type": "proxy",
                "url": "http://127.0.0.1:9",
                "upstream": "http://127.0.0.1:9",
                "proxyCache": {"storage": str(tmp_path / "not-the-root")},
            }
        ],
    )
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "inventory", "--config", str(cfg), "--registry", "cache"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"regkeeper: failed: registry cache: proxyCache.storage {tmp_path / 'not-the-root'}: no "
        "docker/registry/v2 directory there; point proxyCache.storage at the registry's rootdirectory"
    ), last
