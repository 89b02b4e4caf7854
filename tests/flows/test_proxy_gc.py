"""gc on a proxy (pull-through) registry is cache eviction, end to end through the flow: a real
distribution in proxy mode in front of a local upstream, images pulled through it with skopeo,
a recorded Kubernetes API naming one of them. The dry run reports what the cache holds and what
would be evicted and changes nothing; the run evicts inside the reclaim window, frees the bytes
(measured), never touches the image in use, and a pull afterwards is served again."""

import csv

import pytest

from regkeeper.errors import RegkeeperError
from tests.support.proxycache import LAYER, filled_stack
from tests.support.reports import report_docs


@pytest.fixture
def stack(tmp_path):
    with filled_stack(tmp_path) as s:
        yield s


def decisions(stack) -> dict[str, dict]:
    path = report_docs(stack.tmp / "reports" / "gc", "*-cache*.json")[-1]["files"]["csv"]  # the last run
    with open(path, newline="") as f:
        return {f"{r['repository']}:{r['tags']}": r for r in csv.DictReader(f)}


def test_gc_on_a_proxy_evicts_by_pulled_within_and_max_bytes_never_what_is_in_use(stack):
    from flows.gc import gc

    used = stack.storage_bytes()
    cap = used - 3 * LAYER // 2  # after pulledWithin's eviction, one more image must go
    cfg = stack.config(kube=stack.kubernetes("team/app:inuse"), pulledWithin="30d", maxBytes=cap)

    dry = gc(config_path=str(cfg), dry_run=True)
    assert dry["status"] == "dry-run"
    assert stack.storage_bytes() == used and stack.ctl.calls == []
    s = dry["summary"]
    assert (s["repositories cached"], s["images cached"]) == (2, 5)
    assert 0 <= s["storage bytes (measured)"] - used < 20_000  # + the scheduler's state file
    assert s["images to evict by pulledWithin"] == 1 and s["images to evict by the size cap (LRU)"] == 1
    d = decisions(stack)
    assert (d["team/app:stale"]["action"], d["team/app:stale"]["rule"]) == ("evict", "pulledWithin")
    assert (d["team/web:a"]["action"], d["team/web:a"]["rule"]) == ("evict", "maxBytes LRU")
    assert (d["team/app:inuse"]["action"], d["team/app:inuse"]["rule"]) == ("keep", "in use")
    assert "prod:prod/Deployment/web" in d["team/app:inuse"]["reason"]
    assert {d[r]["action"] for r in ("team/app:hot", "team/web:b")} == {"keep"}
    assert any("Would evict 2 of 5" in h for h in dry["headline"])

    res = gc(config_path=str(cfg))
    assert res["status"] == "ok", res["headline"] + res["notes"]
    assert stack.ctl.calls == ["readonly", "readwrite"]
    freed = used - stack.storage_bytes()
    assert freed >= 2 * LAYER and res["summary"]["bytes freed (measured)"] >= 2 * LAYER
    assert stack.storage_bytes() <= cap
    assert not stack.linked("team/app", "stale") and not stack.linked("team/web", "a")
    for ref in ("team/app:inuse", "team/app:hot", "team/web:b"):
        assert stack.linked(*ref.split(":")), ref
    assert res["summary"]["kept images verified"] == 3
    d = decisions(stack)
    assert d["team/app:stale"]["action"] == "evicted" and d["team/app:inuse"]["action"] == "keep"
    # pulled through the cache again: fetched from the upstream
    stack.pull("team/app:stale")
    stack.pull("team/app:inuse")
    assert stack.linked("team/app", "stale")


def test_gc_on_a_proxy_fails_closed_when_kubernetes_cannot_be_read(stack):
    from flows.gc import gc

    kube = stack.kubernetes("team/app:inuse")
    stack.api.fail("deployments", 500)
    cfg = stack.config(kube=kube, pulledWithin="30d")
    before = stack.storage_bytes()
    with pytest.raises(RegkeeperError, match="refused"):
        gc(config_path=str(cfg))
    assert stack.storage_bytes() == before and stack.linked("team/app", "stale")
    assert stack.ctl.calls == []


def test_gc_on_a_proxy_over_the_cap_is_refused_then_forced(stack):
    """maxBytes far below what the cache holds: LRU would evict 4 of 5 images (80%), over the
    default proxyCache.maxEvictFraction (50%). The dry run says a run would be refused; the run
    is refused naming the key, opens no reclaim window and unlinks nothing; force evicts, and the
    image in use is still kept."""
    from flows.gc import gc

    cfg = stack.config(kube=stack.kubernetes("team/app:inuse"), maxBytes=1)
    before = stack.files()
    dry = gc(config_path=str(cfg), dry_run=True)
    assert any("A run would be refused: blast-radius cap" in h for h in dry["headline"]), dry["headline"]
    with pytest.raises(RegkeeperError, match=r"proxyCache\.maxEvictFraction.*4/5 cached images \(80%\)"):
        gc(config_path=str(cfg))
    assert stack.ctl.calls == [] and stack.files() == before
    for ref in ("team/app:stale", "team/app:hot", "team/web:a", "team/web:b", "team/app:inuse"):
        assert stack.linked(*ref.split(":")), ref

    res = gc(config_path=str(cfg), force=True)
    assert res["status"] == "ok", res["headline"] + res["notes"]
    assert stack.ctl.calls == ["readonly", "readwrite"]
    assert stack.linked("team/app", "inuse")
    assert not any(stack.linked(*r.split(":")) for r in ("team/app:stale", "team/app:hot", "team/web:a"))
