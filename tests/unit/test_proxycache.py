"""The eviction plan of a pull-through cache (pure): which images each rule evicts, what is
never evicted (in use, pulled within the window, history too short), the bytes a shared blob
frees, and the proxyCache config keys and their errors."""

from datetime import UTC, datetime, timedelta

import pytest

from regkeeper.config import ConfigError, parse_config
from regkeeper.kube.inuse import InUseSource, RegistryUsage
from regkeeper.kube.refs import parse_image_ref
from regkeeper.policy.pulled import PullKeep
from regkeeper.proxycache.evict import check_evict_cap, plan_eviction
from regkeeper.proxycache.inventory import CacheImage, CacheInventory
from regkeeper.pulls.history import PullHistory

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MB = 1_000_000
HOST = "cache.local:5000"


def dg(n: int) -> str:
    return f"sha256:{n:064x}"


def cache() -> CacheInventory:
    """a: 1 MB own; b, c: share a 2 MB base, 1 MB own each; idx: an index with two children."""
    inv = CacheInventory(root="/x")
    inv.blob_sizes = {dg(i): MB for i in (1, 2, 3, 11, 12)} | {dg(9): 2 * MB}
    days = lambda n: NOW - timedelta(days=n)  # noqa: E731
    inv.images = [
        CacheImage("app", dg(101), days(60), ["a"], blobs={dg(1)}),
        CacheImage("web", dg(102), days(50), ["b"], blobs={dg(2), dg(9)}),
        CacheImage("web", dg(103), days(40), ["c"], blobs={dg(3), dg(9)}),
        CacheImage("multi", dg(104), days(70), ["m"], children=[dg(105), dg(106)], blobs={dg(11), dg(12)}),
    ]
    return inv


def history(pulls: dict[str, int], since_days: int = 90) -> PullHistory:
    h = PullHistory("cache", since=NOW - timedelta(days=since_days), alive=NOW)
    for d, ago in pulls.items():
        h.last[("web" if d in (dg(102), dg(103)) else "multi" if d == dg(105) else "app", d)] = (
            NOW - timedelta(days=ago)
        )
    return h


def usage(*refs: str) -> RegistryUsage:
    src = InUseSource("prod", "ns", "Deployment", "d", "c", "spec")
    return RegistryUsage([HOST], [(parse_image_ref(f"{HOST}/{r}"), src) for r in refs])


def actions(plan) -> dict[str, tuple[str, str]]:
    return {d.image.tags[0]: (d.action, d.rule) for d in plan.decisions}


def test_pulled_within_evicts_what_was_not_pulled_and_keeps_the_rest():
    pulls = PullKeep(history({dg(102): 3, dg(105): 5, dg(103): 35}), NOW)
    plan = plan_eviction(
        "cache", cache(), 7 * MB, max_bytes=None, pulled_within=timedelta(days=30), pulls=pulls
    )
    # m is kept: one of its children was pulled 5 days ago (a pull by digest of a platform)
    assert actions(plan) == {
        "a": ("evict", "pulledWithin"),
        "b": ("keep", ""),
        "c": ("evict", "pulledWithin"),
        "m": ("keep", ""),
    }
    by = {d.image.tags[0]: d for d in plan.decisions}
    assert by["a"].bytes_freed == MB and by["c"].bytes_freed == MB  # the base stays with b
    assert by["b"].reason.startswith("pulled ") and "within 30d" in by["b"].reason
    assert by["c"].reason.startswith("last pulled")
    assert "not pulled within 30d" in by["a"].reason


def test_pulled_within_keeps_what_the_cache_stored_within_the_window():
    """The cache stores only what something pulled through it: an image cached 3 days ago with no
    recorded pull (an excluded user agent, a pre-warming job) is kept; so is one cached again
    after an old recorded pull."""
    inv = cache()
    inv.images[0].cached = NOW - timedelta(days=3)  # a: never pulled by a counted client
    inv.images[2].cached = NOW - timedelta(days=2)  # c: last recorded pull 45 days ago
    pulls = PullKeep(history({dg(102): 3, dg(105): 5, dg(103): 45}), NOW)
    plan = plan_eviction("cache", inv, 7 * MB, max_bytes=None, pulled_within=timedelta(days=30), pulls=pulls)
    assert not plan.evicted()
    by = {d.image.tags[0]: d for d in plan.decisions}
    assert by["a"].reason.startswith("cached ") and "within 30d" in by["a"].reason
    assert (by["c"].last_used, by["c"].last_used_source) == (NOW - timedelta(days=2), "cached")


def test_pulled_within_evicts_nothing_when_history_is_shorter_than_the_window():
    pulls = PullKeep(history({dg(102): 3}, since_days=10), NOW)
    plan = plan_eviction(
        "cache", cache(), 7 * MB, max_bytes=None, pulled_within=timedelta(days=30), pulls=pulls
    )
    assert not plan.evicted()
    assert all(
        "pull history shorter than the window" in d.reason for d in plan.kept() if d.image.tags != ["b"]
    )
    assert any("nothing is evicted for that reason" in n for n in plan.notes)
    # no history at all: the same
    plan = plan_eviction(
        "cache", cache(), 7 * MB, max_bytes=None, pulled_within=timedelta(days=30), pulls=PullKeep(None, NOW)
    )
    assert not plan.evicted()


def test_max_bytes_evicts_least_recently_used_until_under_the_cap_never_in_use():
    # last use: a cached 60d (no pull), m child pulled 5d, b pulled 3d, c cached 40d
    pulls = PullKeep(history({dg(102): 3, dg(105): 5}), NOW)
    inv = cache()
    plan = plan_eviction(
        "cache", inv, 7 * MB, max_bytes=4 * MB, pulled_within=None, pulls=pulls, in_use=usage("app:a")
    )
    # a (oldest) is in use; c (40d) frees 1 MB, m (5d) frees 2 MB: 7 - 3 = 4 MB, under the cap
    assert actions(plan) == {
        "a": ("keep", "in use"),
        "b": ("keep", ""),
        "c": ("evict", "maxBytes LRU"),
        "m": ("evict", "maxBytes LRU"),
    }
    assert plan.bytes_after == 4 * MB
    assert "least recently used (cached " in next(d.reason for d in plan.evicted() if d.image.tags == ["c"])


def test_max_bytes_out_of_candidates_says_so_and_keeps_what_is_in_use():
    plan = plan_eviction(
        "cache",
        cache(),
        7 * MB,
        max_bytes=MB,
        pulled_within=None,
        pulls=PullKeep(None, NOW),
        in_use=usage("web:b", f"multi@{dg(106)}"),  # a child digest protects its index
    )
    assert {t for t, (a, _) in actions(plan).items() if a == "keep"} == {"b", "m"}
    assert any("still holds" in n and "2 image(s) kept because they are in use" in n for n in plan.notes)


def test_the_one_cap_refuses_an_eviction_of_more_than_max_evict_fraction():
    plan = plan_eviction(
        "cache",
        cache(),
        7 * MB,
        max_bytes=MB,
        pulled_within=None,
        pulls=PullKeep(None, NOW),
        in_use=usage("web:b"),
    )
    assert len(plan.evicted()) == 3 and len(plan.decisions) == 4
    why = check_evict_cap(plan, 0.5)
    assert why is not None
    assert (
        "more than 50% (proxyCache.maxEvictFraction) of the cached images of cache: 3/4 cached images (75%)"
        in why
    )
    assert "nothing was deleted" in why and "--force" in why
    assert check_evict_cap(plan, 0.5, force=True) is None  # the override (logged)
    assert check_evict_cap(plan, 0.75) is None  # exactly at the fraction is allowed
    assert check_evict_cap(plan, 0.74) is not None


BASE = """\
mirrorRepositories:
- name: cache
  type: proxy
  url: http://127.0.0.1:5001
  upstream: http://127.0.0.1:5000
"""


def test_proxy_cache_keys_load():
    cfg = parse_config(
        BASE + "  proxyCache: {storage: /var/lib/c, maxBytes: 10Gi, pulledWithin: 30d}\n", "c.yaml"
    )
    pc = cfg.registry("cache").proxy_cache
    assert (pc.storage, pc.max_bytes, pc.pulled_within) == ("/var/lib/c", 10 * 1024**3, timedelta(days=30))
    assert pc.evicts and pc.max_evict_fraction == 0.5  # the cap's default, as gc.maxDeleteFraction


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ("  proxyCache: {maxBytes: 1Gi}\n", "mirrorRepositories[0]", "proxyCache.storage: required"),
        (
            "  proxyCache: {storage: /c, maxBytes: 0}\n",
            "mirrorRepositories[0].proxyCache.maxBytes",
            "greater",
        ),
        (
            "  proxyCache: {storage: /c, pulledWithin: 3x}\n",
            "mirrorRepositories[0].proxyCache.pulledWithin",
            "",
        ),
        (
            "  proxyCache: {storage: /c, maxBytes: 1Gi, maxEvictFraction: 1.5}\n",
            "mirrorRepositories[0].proxyCache.maxEvictFraction",
            "less than or equal to 1",
        ),
    ],
)
def test_proxy_cache_errors_name_the_key(extra, key, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + extra, "c.yaml")
    assert key in str(ei.value) and words in str(ei.value) and "c.yaml:" in str(ei.value)


def test_proxy_cache_only_for_a_proxy():
    text = BASE.replace("type: proxy", "type: local") + "  proxyCache: {storage: /c}\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml")
    assert "proxyCache: only for type proxy" in str(ei.value)


def _link(root, rel: str, digest: str, mtime: float | None = None):
    p = root / "docker/registry/v2/repositories" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(digest)
    if mtime is not None:
        import os

        os.utime(p, (mtime, mtime))
    return p


def test_unlink_leaves_what_a_kept_image_needs_and_what_changed_since_the_plan(tmp_path):
    """Two cached indexes share a child: evicting one keeps the shared child linked; a tag moved
    to another manifest since the plan stays; an image cached again since the plan is skipped."""
    from regkeeper.proxycache import UnlinkResult, unlink
    from regkeeper.proxycache.evict import EVICT, Decision
    from regkeeper.storage import FilesystemStorage

    rev = lambda d: f"m/_manifests/revisions/sha256/{d.split(':')[1]}/link"  # noqa: E731
    old = NOW.timestamp()
    for d in (dg(1), dg(2), dg(3), dg(4), dg(5)):
        _link(tmp_path, rev(d), d, old)
    _link(tmp_path, "m/_manifests/tags/x/current/link", dg(1))
    _link(tmp_path, "m/_manifests/tags/moved/current/link", dg(4))  # was dg(1) at plan time
    storage = FilesystemStorage(tmp_path)
    x = CacheImage("m", dg(1), NOW, ["x", "moved"], children=[dg(2), dg(3)])
    y = CacheImage("m", dg(4), NOW, [], children=[dg(3)])  # kept: shares child dg(3)
    z = CacheImage("m", dg(5), NOW - timedelta(days=1), [])  # cached again since the plan
    plan = plan_eviction(
        "cache", CacheInventory("/x"), 0, max_bytes=None, pulled_within=None, pulls=PullKeep(None, NOW)
    )
    plan.decisions = [
        Decision(x, EVICT, "pulledWithin", "", NOW, "cached"),
        Decision(y, "keep", "in use", "", NOW, "cached"),
        Decision(z, EVICT, "pulledWithin", "", NOW, "cached"),
    ]
    res = UnlinkResult()
    unlink(storage, plan, res)
    assert res.evicted == [("m", dg(1))]
    assert res.skipped == [("m", dg(5), "cached again since the plan")]
    assert set(storage.revision_times("m")) == {dg(3), dg(4), dg(5)}
    assert storage.tag_digests("m") == {"moved": dg(4)}
    unlink(storage, plan, UnlinkResult())  # again: nothing left to do, no error


def test_a_tag_link_caught_mid_rewrite_is_read_again(tmp_path, monkeypatch, caplog):
    """A pull through a live cache re-links its tag: distribution truncates the link file, then
    writes it. A read in between found it empty, and the tag fell out of the inventory (a tag
    a workload runs then protected nothing). Read again; one that stays empty is left out."""
    import regkeeper.storage as st

    link = _link(tmp_path, "m/_manifests/tags/inuse/current/link", "")  # truncated, not yet written
    _link(tmp_path, "m/_manifests/tags/other/current/link", dg(2))
    pauses = []

    def writer_finishes(seconds):  # the registry completes its write while we wait
        pauses.append(seconds)
        link.write_text(dg(1))

    monkeypatch.setattr(st, "_pause", writer_finishes)
    storage = st.FilesystemStorage(tmp_path)
    assert storage.tag_digests("m") == {"inuse": dg(1), "other": dg(2)}
    assert len(pauses) == 1
    link.write_text("")
    monkeypatch.setattr(st, "_pause", pauses.append)  # a link that stays empty (a crashed write)
    with caplog.at_level("WARNING", logger="regkeeper.storage"):
        assert storage.tag_digests("m") == {"other": dg(2)}
    assert len(pauses) == 1 + st.LINK_READS - 1
    assert "m:inuse: the tag's link stays empty" in caplog.text


def test_unlink_while_the_cache_writes_into_the_tag_directory(tmp_path, monkeypatch):
    """A cache in its read-only window still stores what it fetches: a pull re-links a tag while
    eviction removes it, and rmtree finds the directory not empty (ENOTEMPTY). Removed again,
    not a failed eviction; other errors still name the path; other tags are left alone."""
    import errno
    import shutil

    import regkeeper.storage as st
    from regkeeper.errors import RegkeeperError

    _link(tmp_path, f"m/_manifests/revisions/sha256/{dg(1).split(':')[1]}/link", dg(1))
    tag = _link(tmp_path, "m/_manifests/tags/x/current/link", dg(1)).parent.parent
    _link(tmp_path, "m/_manifests/tags/kept/current/link", dg(2))
    real, calls = shutil.rmtree, []

    def rmtree_racing_a_pull(path, *a, **kw):
        calls.append(str(path))
        if len(calls) == 1:  # a link appeared between rmtree's listing and its rmdir
            (tag / "index").mkdir(exist_ok=True)
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(st.shutil, "rmtree", rmtree_racing_a_pull)
    storage = st.FilesystemStorage(tmp_path)
    storage.unlink_manifest("m", dg(1), ["x"])
    assert calls[:2] == [str(tag), str(tag)] and not tag.exists()
    assert storage.tag_digests("m") == {"kept": dg(2)} and storage.revision_times("m") == {}

    def rmtree_denied(path, *a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(st.shutil, "rmtree", rmtree_denied)
    with pytest.raises(RegkeeperError, match="storage: cannot remove .*/tags/kept: Permission denied"):
        storage.unlink_manifest("m", dg(2), ["kept"])


def test_report_counts_read_as_counts_and_the_headline_says_where_the_cap_leaves_the_cache():
    from regkeeper.proxycache.report import build_report

    pulls = PullKeep(history({dg(102): 3, dg(105): 5}), NOW)
    plan = plan_eviction(
        "cache", cache(), 7 * MB, max_bytes=4 * MB, pulled_within=None, pulls=pulls, in_use=usage("app:a")
    )
    rep = build_report("cache", inv=cache(), plan=plan, dry_run=True)
    assert rep.summary["images to evict by the size cap (LRU)"] == 2
    md = rep.markdown()
    assert "| images to evict by the size cap (LRU) | 2 |" in md  # a count, not "2 (2 B)"
    assert rep.headline[0].startswith("Would evict 2 of 4 cached images (maxBytes LRU: 2)")
    assert rep.headline[1] == "Storage after eviction: 3.8 MiB, under maxBytes 3.8 MiB."
    # the history does not cover the window: nothing evicted, and the headline says why
    short = plan_eviction(
        "cache",
        cache(),
        7 * MB,
        max_bytes=None,
        pulled_within=timedelta(days=30),
        pulls=PullKeep(history({dg(102): 3}, since_days=10), NOW),
    )
    rep = build_report("cache", inv=cache(), plan=short, dry_run=True)
    assert rep.headline[0].startswith("Would evict 0 of 4 cached images")
    assert rep.headline[1].startswith(
        "Held back by the pulledWithin fail-safe: pulledWithin 30d on cache: pull history shorter than "
        "the window (collecting since 2026-05-22T00:00:00Z)"
    )
