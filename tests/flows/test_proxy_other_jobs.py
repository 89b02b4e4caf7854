"""The jobs other than gc on a proxy (pull-through) registry, against a real distribution in
proxy mode in front of a local upstream: expire and restore refuse it by name and say why (it
answers DELETE and pushes with 405), backup leaves it out with the reason in its report,
capacity measures its storage without reading anything through it (a scan through the API
would fill the cache). Nothing in the cache changes in any of them."""

import pytest
import yaml

from regkeeper.errors import RefusedError
from regkeeper.proxycache import read_cache
from regkeeper.storage import FilesystemStorage
from tests.integration.test_cli import rk
from tests.support.proxycache import filled_stack, layer


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with filled_stack(tmp_path_factory.mktemp("proxy-jobs")) as s:
        yield s


def _config(stack, **sections) -> str:
    """The stack's config plus the upstream as a second registry and ``sections``."""
    path = stack.config()
    doc = yaml.safe_load(path.read_text())
    doc["mirrorRepositories"].append({"name": "upstream", "url": stack.up.url})
    doc |= sections
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _cache_state(stack) -> set[tuple[str, str, tuple[str, ...]]]:
    inv = read_cache(FilesystemStorage(str(stack.cache.root)))
    return {(i.repository, i.digest, tuple(sorted(i.tags))) for i in inv.images}


def test_expire_on_a_proxy_refuses_naming_the_registry_and_why(stack, prefect_api):
    from flows.expire import expire

    cfg = _config(stack, tiers=[{"name": "all", "match": ["**"], "keepLast": 1}])
    before = _cache_state(stack)
    with pytest.raises(RefusedError, match=r"registry cache \(expire\): it is type proxy: .*DELETE with 405"):
        expire(registry="cache", config_path=cfg)
    assert _cache_state(stack) == before and stack.ctl.calls == []
    # the CLI: one last line naming the registry and the reason, exit code 3 (refused)
    out = rk("run", "expire", "--config", cfg, "--registry", "cache", prefect=prefect_api, timeout=300)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 3, out.stderr
    assert last.startswith("regkeeper: refused: registry cache (expire): it is type proxy"), last
    assert "gc is eviction" in last and "405" in last


def test_backup_leaves_a_proxy_out_and_says_why_and_refuses_it_by_name(stack):
    from flows.backup import backup

    target = stack.tmp / "backups"
    cfg = _config(stack, backup={"target": f"file://{target}", "keep": 2})
    before = _cache_state(stack)
    res = backup(config_path=cfg)
    # the upstream only: a registry asked for by nobody is not backed up, and the report says why
    assert (res["status"], res["registry"]) == ("ok", "upstream")
    notes = res["notes"]
    assert any("cache: not backed up: it is type proxy" in n for n in notes), notes
    with pytest.raises(RefusedError, match=r"registry cache \(backup\): it is type proxy"):
        backup(registry="cache", config_path=cfg)
    assert _cache_state(stack) == before


def test_restore_into_a_proxy_refuses(stack):
    from flows.backup import restore

    cfg = _config(stack, backup={"target": f"file://{stack.tmp / 'backups-r'}", "keep": 2})
    with pytest.raises(RefusedError, match=r"registry cache \(restore\): it is type proxy: .*no pushes"):
        restore(registry="cache", snapshot_registry="upstream", config_path=cfg)


def test_capacity_of_a_proxy_measures_its_storage_and_reads_nothing_through_it(stack):
    from flows.capacity import capacity

    cfg = _config(stack, capacity={"warn": 0.8, "critical": 0.9})
    stack.push("team/app", "upstream-only", [layer(50_000, 9)])  # listed through the cache
    before = _cache_state(stack)
    used = stack.storage_bytes()
    res = capacity(registry="cache", config_path=cfg, dry_run=True)
    assert res["status"] == "dry-run"
    assert any(
        "it is type proxy: its images and per-repository usage are read from its storage" in n
        for n in res["notes"]
    )
    # the figures are the cache's (5 images cached), not the upstream's tag lists (6 tags now)
    s = res["summary"]
    assert (s["images (tags)"], s["images cached"], s["repositories"]) == (5, 5, 2), s
    # measured on the cache's storage; no manifest was fetched through it (nothing new cached)
    assert _cache_state(stack) == before
    assert 0 <= stack.storage_bytes() - used < 20_000


def test_capacity_by_default_measures_a_proxy_known_only_by_its_upstream(stack):
    """The seed's shape (examples/regkeeper.yaml): a proxy with no url, only ``upstream`` and
    ``proxyCache.storage``. Every-registry capacity measured the others and left it out silently."""
    from flows.capacity import capacity

    cfg = _config(stack, capacity={"warn": 0.8, "critical": 0.9})
    doc = yaml.safe_load(open(cfg).read())
    del doc["mirrorRepositories"][0]["url"]
    del doc["mirrorRepositories"][0]["reclaim"]
    open(cfg, "w").write(yaml.safe_dump(doc, sort_keys=False))
    res = capacity(config_path=cfg, dry_run=True, logical_usage=False)
    assert set(res["registries"]) == {"cache", "upstream"}
    cache = res["registries"]["cache"]
    assert cache["status"] == "dry-run", cache
    assert (cache["summary"]["images cached"], cache["summary"]["repositories"]) == (5, 2), cache
