"""The backtest flow on the harness's real server: a too-aggressive gc rule, a recorded pull
history; the flow's artifact is the regret report and nothing is deleted."""

from datetime import UTC, datetime, timedelta

from regkeeper.pulls.store import PullStore
from tests.flows.test_artifacts_read_first import artifacts_of
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, truth

NAME = "local-registry"


def test_backtest_flow_reports_the_regret_as_an_artifact(registry_factory, tmp_path):
    from flows.backtest import backtest

    reg = registry_factory()
    pushed = {t: images.push_image(reg.url, "team/app", t, seed=t, verify=False).digest for t in ("a", "b")}
    now = datetime.now(UTC)
    age(reg.root, "team/app", ["a", "b"], (now - timedelta(days=40)).timestamp())
    url = f"sqlite:///{tmp_path}/pulls.sqlite"
    store = PullStore(url)
    store.mark_collection_start(NAME, now - timedelta(days=100))
    store.record_pull(NAME, "team/app", pushed["a"], now - timedelta(days=2), "a", "containerd/1.7")
    store.heartbeat(now)
    store.close()
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, NAME, reclaim="none")],
        gc={"registry": NAME, "rules": [{"name": "week", "delete": {"olderThan": "7d"}}]},
        pulls={"store": url},
        stateDir=str(tmp_path / "state"),
    )
    before = truth(reg.url)
    state = backtest(job="gc", since="60d", config_path=str(cfg), return_state=True)
    out = state.result()
    assert out["status"] == "dry-run"
    assert out["summary"]["regret in the replay (pulled or run afterwards)"] == 1
    assert truth(reg.url) == before
    arts = artifacts_of(state.state_details.flow_run_id)
    md = arts["backtest-gc-local-registry"].data
    assert "Nothing was deleted" in md and "gc/week" in md
    rows = arts["backtest-gc-local-registry-table"].data
    assert pushed["a"][:19] in str(rows) and pushed["b"][:19] not in str(rows)
    assert "Regret = an image the rules delete that someone wanted afterwards" in md
    assert "Images regretted by rule: gc/week: 1." in md
    # the task run names the registry (the job's configured one), not "backtest gc on None"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as c:
        runs = c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert "backtest gc on local-registry" in {r.name for r in runs}
    # the flow run's logs say the result (a log line per headline line), as the UI shows them
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as c:
        logs = c.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    assert any(lg.message.startswith("backtest: Regret = an image") for lg in logs), [
        lg.message for lg in logs
    ]
