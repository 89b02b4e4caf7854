"""The reclaim's read-only window on a real registry (read-only = distribution's
storage.maintenance.readonly, switched by RegistryControl): recorded durably before readOnly,
cleared only after readWrite succeeded, kept (and recovered by the next run) when readWrite
fails; one reclaim per registry at a time (the reclaim-<registry> lease)."""

import sys

import pytest
import yaml

from regkeeper.config import ReclaimConfig, parse_config
from regkeeper.prune.reclaim import reclaim
from regkeeper.runstate import Lease, Owner, RunState, lease_name, read_holder, read_window, recover_windows
from regkeeper.storage import FilesystemStorage
from tests.support import images
from tests.support.rkconfig import RegistryControl


@pytest.fixture
def reg_ctl(registry_factory):
    reg = registry_factory()
    keep = images.push_image(reg.url, "win/app", "keep", layers=[b"k" * 100_000])
    gone = images.push_image(reg.url, "win/app", "gone", layers=[b"g" * 200_000])
    images.delete_manifest(reg.url, "win/app", gone.digest)
    seen = {}
    ctl = RegistryControl(reg)
    yield reg, keep, ctl, seen
    ctl.stop()


def test_window_recorded_before_read_only_and_cleared_after_read_write(reg_ctl, tmp_path):
    reg, keep, ctl, seen = reg_ctl
    rs = RunState(tmp_path / "state", Owner.current("gc", "run-1"), 60)
    ctl.on_readonly = lambda: seen.update(
        window=read_window(rs.root, "local-registry"),
        lease=read_holder(rs.root, lease_name("local-registry")),
    )
    cfg = ReclaimConfig.model_validate(ctl.reclaim_config())
    res = reclaim(cfg, FilesystemStorage(reg.root), registry="local-registry", state=rs)
    assert res.error is None and res.ran and res.bytes_freed >= 200_000
    w = seen["window"]  # on disk while readOnly ran
    assert w.run == "run-1" and w.owner.job == "gc" and w.read_write == cfg.read_write
    assert w.step == "readOnly" and w.step_pid and seen["lease"].owner.run == "run-1"
    assert ctl.calls == ["readonly", "readwrite"]
    assert read_window(rs.root, "local-registry") is None  # closed
    assert read_holder(rs.root, lease_name("local-registry")) is None  # released
    assert images.push_image(reg.url, "win/after", "x").digest  # writable
    assert images.head_manifest(reg.url, "win/app", "keep") == keep.digest
    for d in keep.layer_digests:
        assert images.blob_exists(reg.url, "win/app", d)


def test_read_write_failure_keeps_the_window_and_the_next_run_closes_it(reg_ctl, tmp_path):
    reg, keep, ctl, _ = reg_ctl
    rs = RunState(tmp_path / "state", Owner.current("gc", "run-1"), 60)
    rc = ctl.reclaim_config()
    broken = ReclaimConfig.model_validate({**rc, "readWrite": [sys.executable, "-c", "raise SystemExit(4)"]})
    res = reclaim(broken, FilesystemStorage(reg.root), registry="local-registry", state=rs)
    assert res.ran and "reclaim.readWrite exited 4" in res.error
    assert "THE REGISTRY MAY STILL BE READ-ONLY" in res.error and "runs readWrite again" in res.error
    assert read_window(rs.root, "local-registry").run == "run-1"  # kept, loudly
    with pytest.raises(images.PushError, match="405"):
        images.push_image(reg.url, "win/meanwhile", "x")
    fixed = parse_config(
        yaml.safe_dump({"mirrorRepositories": [{"name": "local-registry", "url": reg.url, "reclaim": rc}]})
    )
    nxt = RunState(rs.root, Owner.current("backup", "run-2"), 60)
    (r,) = recover_windows(nxt, config=fixed)
    assert r.outcome == "recovered" and "left read-only by run run-1" in r.note()
    assert ctl.calls == ["readonly", "readwrite"] and read_window(rs.root, "local-registry") is None
    assert images.push_image(reg.url, "win/after", "x").digest


def test_one_reclaim_per_registry(reg_ctl, tmp_path):
    reg, _, ctl, _ = reg_ctl
    root = tmp_path / "state"
    other = Lease(root, lease_name("local-registry"), Owner.current("expire", "run-other"), 60)
    assert other.acquire().ok
    with other.held():
        rs = RunState(root, Owner.current("gc", "run-1"), 60)
        res = reclaim(
            ReclaimConfig.model_validate(ctl.reclaim_config()),
            FilesystemStorage(reg.root),
            registry="local-registry",
            state=rs,
        )
    assert not res.ran and "garbage-collect skipped" in res.error and "run-other" in res.error
    assert ctl.calls == [] and read_window(root, "local-registry") is None
