"""Scale-out on Dask: gc (dry run and a real delete) and replicate run their per-batch tasks on
a real ``dask.distributed.LocalCluster`` of two worker PROCESSES on 127.0.0.1, chosen by the
config's ``runner`` section or by ``REGKEEPER_TASK_RUNNER``, with the same results as the
threaded run on an identical registry. The scheduler's task stream proves where tasks ran."""

import csv
import datetime as dt
import os
from pathlib import Path

import pytest

from tests.support import images
from tests.support.rkconfig import registry_entry, write_config

CREATED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # fixed: identical digests in both registries
N_REPOS = 30  # > 25: two scan batches and two delete batches
TAGS = 3
GC = {"days": 0, "keepLast": 1, "protect": [], "maxDeleteFraction": 1.0, "untaggedGrace": "0s"}


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=2, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as c:
        with Client(c, set_as_default=False) as client:
            yield c, client


def fill(reg) -> None:
    images.push_many(
        reg.url,
        n_repos=N_REPOS,
        tags_per_repo=TAGS,
        prefix="scale/app",
        verify=False,
        seed=7,
        created_start=CREATED,
    )


def gc_config(tmp_path: Path, reg, name: str, runner: dict | None) -> Path:
    d = tmp_path / name
    d.mkdir()
    return write_config(
        d / "regkeeper.yaml",
        [registry_entry(reg, storage=False)],
        gc={"registry": "local-registry", **GC},
        runner=runner,
    )


def figures(report: dict) -> dict:
    return {k: v for k, v in report["summary"].items() if "seconds" not in k}


def decisions(report: dict) -> list[tuple]:
    with open(report["files"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted((r["repository"], r["tag"], r["digest"], r["action"]) for r in rows)


def remaining(reg) -> dict[str, list[str]]:
    return {
        r: sorted(images.list_tags(reg.url, r, verify=False)) for r in images.catalog(reg.url, verify=False)
    }


def ran_on_workers(client, stream: list[dict], names: set[str]) -> dict[str, set[int]]:
    """Task name -> pids of the Dask worker processes that ran it (from the task stream)."""
    pids = client.run(os.getpid)  # worker address -> pid
    out: dict[str, set[int]] = {}
    for t in stream:
        name = t["key"].rsplit("-", 1)[0] if isinstance(t["key"], str) else str(t["key"])
        if name in names:
            out.setdefault(name, set()).add(pids[t["worker"]])
    return out


def test_gc_on_dask_matches_threads(cluster, registry_factory, tmp_path):
    from distributed import get_task_stream

    from flows.gc import gc

    c, client = cluster
    a, b = registry_factory(), registry_factory()
    fill(a)
    fill(b)
    threads_cfg = gc_config(tmp_path, a, "threads", None)
    dask_cfg = gc_config(tmp_path, b, "dask", {"type": "dask", "address": c.scheduler_address})

    dry_t = gc(config_path=str(threads_cfg), dry_run=True)
    with get_task_stream(client=client) as ts:
        dry_d = gc(config_path=str(dask_cfg), dry_run=True)
    assert dry_d["status"] == dry_t["status"] == "dry-run"
    assert dry_d["summary"]["tags to delete"] == N_REPOS * (TAGS - 1)
    assert figures(dry_d) == figures(dry_t)
    assert decisions(dry_d) == decisions(dry_t)
    where = ran_on_workers(client, ts.data, {"scan_batch"})
    assert len(ts.data) >= 2 and where["scan_batch"] and os.getpid() not in where["scan_batch"]

    real_t = gc(config_path=str(threads_cfg))
    with get_task_stream(client=client) as ts:
        real_d = gc(config_path=str(dask_cfg))
    assert real_d["status"] == real_t["status"] == "ok"
    assert real_d["summary"]["tags deleted"] == real_t["summary"]["tags deleted"] == N_REPOS * (TAGS - 1)
    assert figures(real_d) == figures(real_t)
    assert decisions(real_d) == decisions(real_t)
    left = remaining(b)
    assert left == remaining(a) and all(tags == [f"build-{TAGS - 1:04d}"] for tags in left.values())
    where = ran_on_workers(client, ts.data, {"scan_batch", "delete_batch"})
    assert set(where) == {"scan_batch", "delete_batch"}
    assert os.getpid() not in where["scan_batch"] | where["delete_batch"]
    assert (where["scan_batch"] | where["delete_batch"]) <= set(client.run(os.getpid).values())


def test_replicate_on_dask_via_env_matches_threads(cluster, registry_factory, tmp_path, monkeypatch):
    from distributed import get_task_stream

    from flows.replicate import replicate

    c, client = cluster
    src, t1, t2 = registry_factory(), registry_factory(), registry_factory()
    images.push_many(src.url, n_repos=N_REPOS, tags_per_repo=2, prefix="rep/app", verify=False, seed=3)
    idx = images.push_index(src.url, "rep/multi", "v1", verify=False)
    images.push_signature(src.url, "rep/multi", idx.digest, verify=False)

    def cfg(name: str, target) -> Path:
        d = tmp_path / name
        d.mkdir()
        return write_config(
            d / "regkeeper.yaml",
            [registry_entry(src, "primary", storage=False), registry_entry(target, "eu", storage=False)],
            replication=[{"name": "to-eu", "from": "primary", "to": ["eu"]}],
        )

    out_t = replicate(config_path=str(cfg("threads", t1)))
    monkeypatch.setenv("REGKEEPER_TASK_RUNNER", c.scheduler_address)
    with get_task_stream(client=client) as ts:
        out_d = replicate(config_path=str(cfg("dask", t2)))
    assert out_d["status"] == out_t["status"] == "ok"
    assert out_d["summary"]["copied"] == out_t["summary"]["copied"] == N_REPOS * 2 + 2
    print("replicate figures (threads):", figures(out_t), "\n(dask):", figures(out_d))
    digests = {}
    for reg in (t1, t2):
        digests[reg.url] = {
            (r, t): images.head_manifest(reg.url, r, t, verify=False)
            for r, tags in remaining(reg).items()
            for t in tags
        }
    d1, d2 = digests.values()
    assert d1 == d2 and len(d1) == N_REPOS * 2 + 2
    assert d2[("rep/multi", "v1")] == idx.digest
    where = ran_on_workers(client, ts.data, {"plan_batch", "copy_batch", "verify_batch"})
    assert {"plan_batch", "copy_batch"} <= set(where)
    assert os.getpid() not in set().union(*where.values())


def test_local_dask_cluster_from_config(registry_factory, tmp_path):
    """``runner: {type: dask, workers: 2}`` without an address: the run starts its own local
    cluster of worker processes and stops it when the run ends."""
    from flows.gc import gc

    reg = registry_factory()
    images.push_many(reg.url, n_repos=3, tags_per_repo=2, prefix="local/app", verify=False, seed=5)
    cfg = gc_config(tmp_path, reg, "local", {"type": "dask", "workers": 2})
    out = gc(config_path=str(cfg), dry_run=True)
    assert out["status"] == "dry-run" and out["summary"]["tags to delete"] == 3


def test_backup_and_restore_on_dask(cluster, registry_factory, moto_server, s3_bucket, tmp_path):
    """The S3 store and the snapshot travel to the workers (each opens its own boto3 client from
    the config's references); the snapshot equals the threaded one's and restores on Dask."""
    from distributed import get_task_stream

    from flows.backup import backup, restore

    c, client = cluster
    reg = registry_factory()
    images.push_many(reg.url, n_repos=N_REPOS, tags_per_repo=2, prefix="bk/app", verify=False, seed=9)
    before = {
        (r, t): images.head_manifest(reg.url, r, t, verify=False)
        for r, ts in remaining(reg).items()
        for t in ts
    }

    def cfg(name: str, runner: dict | None) -> Path:
        d = tmp_path / name
        d.mkdir()
        return write_config(
            d / "regkeeper.yaml",
            [registry_entry(reg, "main", storage=False)],
            backup={
                "target": f"s3://{s3_bucket}/{name}",
                "endpoint": moto_server.endpoint,
                "accessKey": moto_server.access_key,
                "secretKey": moto_server.secret_key,
            },
            runner=runner,
        )

    out_t = backup(config_path=str(cfg("threads", None)))
    dask_cfg = cfg("dask", {"type": "dask", "address": c.scheduler_address})
    with get_task_stream(client=client) as ts:
        out_d = backup(config_path=str(dask_cfg))
    assert out_d["status"] == out_t["status"] == "ok"
    same = ("repositories", "tags", "objects written")
    assert [out_d["summary"][k] for k in same] == [out_t["summary"][k] for k in same]
    assert out_d["summary"]["tags"] == N_REPOS * 2
    assert os.getpid() not in ran_on_workers(client, ts.data, {"backup_batch"})["backup_batch"]

    for (repo, _tag), d in before.items():
        images.delete_manifest(reg.url, repo, d, verify=False)
    with get_task_stream(client=client) as ts:
        done = restore(registry="main", dry_run=False, config_path=str(dask_cfg))
    assert done["status"] == "ok" and done["summary"]["restored"] == N_REPOS * 2
    after = {
        (r, t): images.head_manifest(reg.url, r, t, verify=False)
        for r, ts_ in remaining(reg).items()
        for t in ts_
    }
    assert after == before
    assert os.getpid() not in ran_on_workers(client, ts.data, {"restore_batch"})["restore_batch"]
