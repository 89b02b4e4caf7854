"""The ``runner`` section and REGKEEPER_TASK_RUNNER (pure), and what a task argument carries to a
process worker: a pickled RunContext, RegistryClient or Replicator holds the config's secret
REFERENCES, never a resolved value, and the receiving side builds its own clients."""

import pickle

import pytest

from regkeeper.config import RunnerConfig, effective_runner, parse_config
from regkeeper.errors import ConfigError

BASE = "mirrorRepositories:\n- {name: r, url: 'http://127.0.0.1:5000', auth: {username: u, password: 'env:RK_TEST_PW'}}\n"


def test_default_is_threads():
    cfg = parse_config(BASE)
    assert cfg.runner == RunnerConfig() and cfg.runner.type == "threads" and cfg.runner.threads == 4


def test_dask_section_parses():
    cfg = parse_config(BASE + "runner: {type: dask, address: 'tcp://dask-scheduler:8786'}\n")
    assert (cfg.runner.type, cfg.runner.address) == ("dask", "tcp://dask-scheduler:8786")
    cfg = parse_config(BASE + "runner: {type: dask, workers: 3, threadsPerWorker: 2}\n")
    assert (cfg.runner.workers, cfg.runner.threads_per_worker, cfg.runner.address) == (3, 2, None)


@pytest.mark.parametrize(
    "section,needle",
    [
        ("runner: {type: threads, address: 'tcp://h:8786'}", "address applies only with type: dask"),
        ("runner: {type: dask, address: 'h:8786'}", "not a Dask scheduler address"),
        ("runner: {type: spark}", "runner.type"),
        ("runner: {type: dask, workers: 0}", "runner.workers"),
        ("runner: {type: dask, adress: 'tcp://h:8786'}", "address"),  # did you mean
    ],
)
def test_bad_runner_sections_name_the_key(section, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + section + "\n")
    assert needle in str(e.value)


def test_environment_overrides_the_file():
    file = RunnerConfig(type="dask", workers=3)
    assert effective_runner(file, None) == file
    assert effective_runner(file, "") == file
    assert effective_runner(file, "threads").type == "threads"
    assert effective_runner(RunnerConfig(), "dask") == RunnerConfig(type="dask")
    got = effective_runner(RunnerConfig(), "tcp://10.0.0.5:8786")
    assert (got.type, got.address) == ("dask", "tcp://10.0.0.5:8786")
    withaddr = RunnerConfig(type="dask", address="tcp://a:1")
    assert effective_runner(withaddr, "threads").address is None
    with pytest.raises(ConfigError, match="REGKEEPER_TASK_RUNNER"):
        effective_runner(None, "daks")


def test_pickled_context_carries_references_not_secret_values(monkeypatch):
    from regkeeper.context import RunContext
    from regkeeper.replicate import Replicator

    monkeypatch.setenv("RK_TEST_PW", "s3cr3t-value")
    ctx = RunContext(parse_config(BASE))
    client = ctx.client("r")  # resolves the password reference (check_secrets)
    assert ctx.config.registry("r").auth.password.get() == "s3cr3t-value"
    rep = Replicator(client, client, concurrency=3)
    for obj in (ctx, client, rep, ctx.config):
        data = pickle.dumps(obj)
        assert b"s3cr3t-value" not in data and b"env:RK_TEST_PW" in data

    ctx2 = pickle.loads(pickle.dumps(ctx))
    assert ctx2.config == ctx.config and ctx2._clients == {}  # builds its own clients on first use
    monkeypatch.setenv("RK_TEST_PW", "rotated")  # the receiving process resolves it itself
    assert ctx2.config.registry("r").auth.password.get() == "rotated"
    c2 = ctx2.client("r")
    assert c2 is not client and c2.url == client.url
    rep2 = pickle.loads(pickle.dumps(rep))
    assert rep2.remote and rep2.concurrency == 3 and rep2.src is not client
