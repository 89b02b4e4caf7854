"""gc and expire end to end while users keep pushing: kept tags re-tagged between the plan and
verify are reported as moved (not a problem: the run succeeds), and with the read-only reclaim
window (command mode: readOnly -> garbage-collect -> readWrite) every push the registry
acknowledged stays whole while the pushes it refused are simply absent.

The timing is made deterministic with the reclaim hooks: the ``readOnly`` command is a script
written here that re-tags and pushes (acknowledged, the registry is still read-write) and only
then switches the registry read-only; while it is read-only a push is tried and refused, and a
background pusher that pushes throughout is seen refused at least once before the window closes.
"""

import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import images
from tests.support.rkconfig import RegistryControl, registry_entry, write_config

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
ROOT = Path(__file__).resolve().parents[2]
APP = "team-a/app"
PUSHER = "team-bg/pusher"

HOOK = """\
import json, os, sys, urllib.request
sys.path.insert(0, {root!r})
from tests.support import images
u = {url!r}
stable = images.push_image(u, {app!r}, "stable", layers=[os.urandom(4000), os.urandom(1000)])
hotfix = images.push_image(u, {app!r}, "hotfix", layers=[os.urandom(3000)])
images.tag_existing(u, {app!r}, "prod", hotfix.digest)
if os.path.exists({breaker!r}):   # the storage loses a blob of the re-tagged image
    hexd = stable.layer_digests[0].split(":")[1]
    os.unlink(os.path.join({root_dir!r}, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data"))
acked = [dict(tag=t, digest=i.digest, blobs=[i.config_digest] + i.layer_digests)
         for t, i in (("stable", stable), ("hotfix", hotfix), ("prod", hotfix))]
with open({out!r}, "w") as f:
    json.dump(acked, f)
urllib.request.urlopen(urllib.request.Request({ctl!r} + "/readonly", method="POST"), timeout=60)
"""


class Pusher(threading.Thread):
    """Pushes small fresh images to one repository, one tag each, until stopped. Sorts every
    push into acknowledged (HTTP 201 on the manifest), refused (an HTTP answer other than 201)
    or unknown (the connection broke: the registry was restarting)."""

    def __init__(self, url: str, repo: str):
        super().__init__(daemon=True)
        self.url, self.repo = url, repo
        self.acked: list[tuple[str, images.PushedImage]] = []
        self.refused: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.refused_seen = threading.Event()
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            tag = f"p{i:05d}"
            i += 1
            try:
                img = images.push_image(self.url, self.repo, tag, layers=[os.urandom(1500)], timeout=10)
                self.acked.append((tag, img))
            except images.PushError as e:
                self.refused.append((tag, str(e)))
                self.refused_seen.set()
            except requests.RequestException as e:
                self.unknown.append((tag, type(e).__name__))
                time.sleep(0.05)

    def wait_acks(self, more_than: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) <= more_than and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.02)

    def stop(self):
        self.halt.set()
        self.join(30)


def whole(url: str, repo: str, digest: str, blobs: list[str]) -> bool:
    raw, _, _ = images.get_manifest(url, repo, digest)
    ok = images.sha256_digest(raw) == digest
    return ok and all(images.blob_exists(url, repo, b) for b in blobs)


@pytest.fixture(params=["gc", "expire"])
def busy(request, registry_factory, tmp_path):
    reg = registry_factory()
    u = reg.url
    d = {
        t: images.push_image(u, APP, t, layers=[os.urandom(3000)]).digest for t in ("stable", "prod", "edge")
    }
    d["old-1"] = images.push_image(u, APP, "old-1", created=OLD, layers=[os.urandom(3000)]).digest
    d["old-2"] = images.push_image(u, APP, "old-2", created=OLD, layers=[os.urandom(3000)]).digest
    tags_dir = Path(reg.root) / "docker/registry/v2/repositories" / APP / "_manifests/tags"
    for t in ("old-1", "old-2"):
        link = tags_dir / t / "current/link"
        os.utime(link, (OLD.timestamp(), OLD.timestamp()))
    pusher = Pusher(u, PUSHER)
    refused_in_window: list[str] = []

    def during_read_only():
        try:
            images.push_image(u, APP, "during-window", layers=[os.urandom(2000)], timeout=10)
        except images.PushError as e:
            refused_in_window.append(str(e))
        pusher.refused_seen.wait(30)  # the background pusher hits the window too

    ctl = RegistryControl(reg, on_readonly=during_read_only)
    hook_out = tmp_path / "hook-pushes.json"
    hook = tmp_path / "readonly_hook.py"
    hook.write_text(
        HOOK.format(
            root=str(ROOT),
            url=u,
            app=APP,
            out=str(hook_out),
            ctl=ctl.url,
            breaker=str(tmp_path / "break-stable"),
            root_dir=str(reg.root),
        )
    )
    reclaim = dict(ctl.reclaim_config(), readOnly=[sys.executable, str(hook)])
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, reclaim=reclaim)],
        gc={"registry": "local-registry", "days": 30, "keepLast": 0, "protect": [], "maxDeleteFraction": 0.9},
        tiers=[{"name": "business", "match": ["team-*/**"], "keepLast": 1, "keepDays": 30}],
        expire={"registry": "local-registry", "maxDeleteFraction": 0.9},
    )
    pusher.start()
    pusher.wait_acks(0)
    yield request.param, reg, d, cfg, ctl, pusher, hook_out, refused_in_window
    pusher.stop()
    ctl.stop()


def test_users_pushing_during_the_run_do_not_fail_it(busy):
    from flows.expire import expire
    from flows.gc import gc

    flow, reg, d, cfg, ctl, pusher, hook_out, refused_in_window = busy
    u = reg.url
    assert pusher.acked, "the background pusher must be pushing before the run"
    res = {"gc": gc, "expire": expire}[flow](config_path=str(cfg))
    acked_during_run = len(pusher.acked)
    pusher.wait_acks(acked_during_run)  # and pushes again once the window closed
    pusher.stop()

    # the run completed and says what moved (old and new digest), nothing else is a problem
    assert res["status"] == "ok", res["notes"]
    assert ctl.calls == ["readonly", "readwrite"]
    hooked = json.loads(hook_out.read_text())
    now = {p["tag"]: p["digest"] for p in hooked}
    s = res["summary"]
    assert s["verify problems"] == 0 and s["kept tags moved during the run"] == 2, res["notes"]
    for tag in ("stable", "prod"):
        note = (
            f"tag {APP}:{tag} moved during the run from {d[tag][:19]}… to {now[tag][:19]}… "
            "(pushed after the plan): not a problem"
        )
        assert note in res["notes"], res["notes"]
    rows = {r["tag"]: r for r in _csv(res["files"]["csv:verify"])}
    assert set(rows) == {"stable", "prod"}
    for tag in ("stable", "prod"):
        assert rows[tag]["planned digest"] == d[tag] and rows[tag]["digest now"] == now[tag]
        assert rows[tag]["result"] == "moved"

    # the plan's deletes happened; the images the moved tags left behind were not deleted
    for tag in ("old-1", "old-2"):
        assert images.head_manifest(u, APP, d[tag]) is None, tag
    for tag in ("stable", "prod", "edge"):
        assert images.head_manifest(u, APP, d[tag]) == d[tag], tag
    assert sorted(images.list_tags(u, APP)) == ["edge", "hotfix", "prod", "stable"]

    # every acknowledged push is whole: its tag resolves to it, its manifest and blobs answer 200
    for p in hooked:
        assert images.head_manifest(u, APP, p["tag"]) == p["digest"], p
        assert whole(u, APP, p["digest"], p["blobs"]), p
    assert len(pusher.acked) > acked_during_run, "pushes are acknowledged again after the window"
    for tag, img in pusher.acked:
        assert images.head_manifest(u, PUSHER, tag) == img.digest, tag
        assert whole(u, PUSHER, img.digest, [img.config_digest] + img.layer_digests), tag
    # the pushes the registry refused (read-only window) are simply absent
    assert refused_in_window and pusher.refused, "pushes during the read-only window must be refused"
    assert images.head_manifest(u, APP, "during-window") is None
    for tag, _ in pusher.refused:
        assert images.head_manifest(u, PUSHER, tag) is None, tag
    # a push whose connection broke (registry restarting) is absent or whole, never broken
    for tag, _ in pusher.unknown:
        dg = images.head_manifest(u, PUSHER, tag)
        if dg is not None:
            raw, _, _ = images.get_manifest(u, PUSHER, dg)
            doc = json.loads(raw)
            assert whole(u, PUSHER, dg, [doc["config"]["digest"]] + [x["digest"] for x in doc["layers"]])


def _csv(path: str) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_moved_tag_whose_new_image_is_broken_fails_the_run(busy):
    from flows.expire import expire
    from flows.gc import gc
    from regkeeper.errors import RegkeeperError

    flow, reg, d, cfg, ctl, pusher, hook_out, refused_in_window = busy
    (hook_out.parent / "break-stable").touch()
    with pytest.raises(RegkeeperError) as ei:
        {"gc": gc, "expire": expire}[flow](config_path=str(cfg))
    stable = next(p for p in json.loads(hook_out.read_text()) if p["tag"] == "stable")
    msg = str(ei.value)
    assert f"{flow} on local-registry failed" in msg and "team-a/app:stable moved during the run" in msg
    assert "not whole" in msg and stable["blobs"][1] in msg  # the lost layer is named
    assert ctl.calls == ["readonly", "readwrite"]
    [rep] = [json.loads(p.read_text()) for p in (Path(cfg).parent / "reports" / flow).glob("*.json")]
    assert rep["status"] == "failed" and rep["summary"]["verify problems"] == 1
    assert rep["summary"]["kept tags moved during the run"] == 2
    # prod moved to a whole image: information, not a problem
    assert any(
        n.startswith(f"tag {APP}:prod moved during the run") and n.endswith("not a problem")
        for n in rep["notes"]
    )
    rows = {r["tag"]: r for r in _csv(rep["files"]["csv:verify"])}
    assert rows["stable"]["result"] == "moved, problem" and rows["prod"]["result"] == "moved"
