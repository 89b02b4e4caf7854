"""gc under transient faults at a rate completes in ONE run and deletes exactly its plan.

Every registry call of the gc flow goes through the fault proxy's random mode (resets before a
response and mid-body, bodies cut short, 429 with Retry-After, 503, slow answers, answers lost
after the request took effect; seeded, never more than 2 faults in a row for one request). The
plan is made first by a dry run without faults; the faulty run must delete exactly that set,
keep everything else readable, and show its retries in the log. Ground truth is read straight
from the registry (no proxy).
"""

import csv
import datetime as dt
import logging

from tests.support import images
from tests.support.faultrate import DEFAULT_WEIGHTS
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, fill, resolves_with_blobs, truth

OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(days=90)).timestamp()


def planned_deletes(result: dict) -> set[tuple[str, str]]:
    with open(result["files"]["csv"], newline="") as fh:
        return {(r["repository"], r["tag"]) for r in csv.DictReader(fh) if r["action"] == "delete"}


class Records(logging.Handler):
    """The records of one logger, whatever Prefect does to the root logger's handlers."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_gc_completes_in_one_run_under_faults(registry_factory, fault_proxy_factory, tmp_path):
    from flows.gc import gc

    reg = registry_factory()
    fill(reg.url)
    # a fresh Docker manifest list beside the old one, a signed old image beside a fresh one
    images.push_index(reg.url, "multi/docker", "v2", media="docker", verify=False, seed="fresh")
    o1 = images.push_image(reg.url, "signed/old", "o1", verify=False, seed="o1")
    sig_o1 = images.push_signature(reg.url, "signed/old", o1.digest, "sig", verify=False)
    images.push_image(reg.url, "signed/old", "o2", verify=False, seed="o2")
    # old: the 2 oldest builds of every team repository, the old manifest list, the signed old
    # image and its signature, signed/app (both tags; "latest" is protected) and the big image
    # (its repository's only tag: keepLast keeps it)
    for i in range(4):
        age(reg.root, f"team/app-{i:04d}", ["build-0000", "build-0001"], OLD)
    age(reg.root, "multi/docker", ["v1"], OLD)
    age(reg.root, "signed/old", ["o1", sig_o1.tag], OLD)
    age(reg.root, "signed/app", ["v1", "latest"], OLD)
    age(reg.root, "big/app", ["v1"], OLD)
    before = truth(reg.url)
    proxy = fault_proxy_factory(reg.url)
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, url=proxy.url, reclaim="none")],
        gc={
            "registry": "local-registry",
            "days": 30,
            "keepLast": 1,
            "protect": ["latest"],
            "maxDeleteFraction": 0.7,
        },
    )

    dry = gc(config_path=str(cfg), dry_run=True)  # the plan, made without faults
    assert dry["status"] == "dry-run"
    plan = planned_deletes(dry)
    assert plan == (
        {(f"team/app-{i:04d}", f"build-{j:04d}") for i in range(4) for j in range(2)}
        | {("multi/docker", "v1"), ("signed/old", "o1"), ("signed/old", sig_o1.tag)}
    )
    assert ("signed/app", "latest") not in plan and ("big/app", "v1") not in plan
    assert truth(reg.url) == before

    rate = proxy.random_faults(0.05, seed="gc", weights={**DEFAULT_WEIGHTS, "reset_after": 1})
    with Records("regkeeper.retry") as log:
        res = gc(config_path=str(cfg))

    assert res["status"] == "ok", res["notes"]
    after = truth(reg.url)
    assert set(before) - set(after) == plan  # exactly the plan, nothing more
    assert {k: before[k] for k in after} == after  # kept tags did not move
    problems = [x for (repo, tag) in after for x in resolves_with_blobs(reg.url, repo, tag)]
    assert problems == []
    assert rate.total > 0, rate
    retries = [r for r in log.records if r.levelno == logging.WARNING]
    assert len(retries) > 0
    assert len(retries) <= rate.total, rate  # each retry answers an injected fault
