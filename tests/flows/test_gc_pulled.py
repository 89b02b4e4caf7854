"""The gc flow with ``pulledWithin`` end to end: a real registry notifies the receiver, curl
pulls one old image, the flow keeps it (its decision names the pull) and deletes the unpulled
old one; with collection younger than the window the flow deletes nothing and its report says
why. Collection start is simulated through the store."""

import csv
import subprocess
from datetime import UTC, datetime, timedelta

from regkeeper.pulls.store import PullStore
from tests.support import images
from tests.support.pulls import NAME, PullStack
from tests.support.sample import age, truth

GC = {"registry": NAME, "days": 30, "keepLast": 1, "protect": [], "pulledWithin": "30d"}
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"


def _stack(tmp_path, since_days: float):
    # the test's own reads (truth(): HEAD by python-requests) are a "scanner" here: excluded,
    # as distribution 2.8 notifies a HEAD as a pull
    s = PullStack(tmp_path, gc=GC, exclude=["regkeeper/*", "python-requests/*"]).start()
    url = s.reg.url
    for t in ("pulled", "unpulled", "new"):
        images.push_image(url, "team/app", t, seed=t)
    age(s.reg.root, "team/app", ["pulled", "unpulled"], (datetime.now(UTC) - timedelta(days=60)).timestamp())
    store = PullStore(s.store_url)
    store.mark_collection_start(NAME, datetime.now(UTC) - timedelta(days=since_days))
    store.close()
    subprocess.run(
        ["curl", "-sSf", "-o", "/dev/null", "-H", f"Accept: {ACCEPT}", f"{url}/v2/team/app/manifests/pulled"],
        check=True,
        timeout=30,
    )
    s.wait_rows(1)
    return s


def decisions(stack) -> dict[str, dict]:
    (path,) = sorted((stack.tmp / "reports" / "gc").glob("*-local-registry.csv"))
    with open(path, newline="") as f:
        return {r["tag"]: r for r in csv.DictReader(f)}


def test_gc_flow_keeps_the_pulled_image_and_deletes_the_unpulled(tmp_path):
    from flows.gc import gc

    s = _stack(tmp_path, since_days=40)
    try:
        res = gc(config_path=str(s.config_path))
        assert res["status"] == "ok", res["notes"]
        d = decisions(s)
        assert d["pulled"]["action"] == "keep" and d["pulled"]["reason"].startswith("pulled ")
        assert d["unpulled"]["action"] == "delete"
        assert any("pull history covers the window" in n for n in res["notes"])
        assert set(truth(s.reg.url)) == {("team/app", "pulled"), ("team/app", "new")}
    finally:
        s.stop()


def test_gc_flow_with_young_collection_deletes_nothing_and_says_why(tmp_path):
    from flows.gc import gc

    s = _stack(tmp_path, since_days=3)
    try:
        before = truth(s.reg.url)
        res = gc(config_path=str(s.config_path))
        assert res["status"] == "ok", res["notes"]
        d = decisions(s)
        assert d["unpulled"]["action"] == "keep"
        assert d["unpulled"]["reason"].startswith("pull history shorter than the window (collecting since")
        assert any("pull history shorter than the window" in n for n in res["notes"]), res["notes"]
        assert truth(s.reg.url) == before
    finally:
        s.stop()
