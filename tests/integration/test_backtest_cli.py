"""``regkeeper backtest`` on a real distribution 2.8 and a pull store (SQLite and PostgreSQL)
holding a generated pull history: the regret report names exactly the images a too-aggressive
gc rule would have deleted and that were pulled afterwards, and the registry is untouched (a
backtest never deletes); an image a Kubernetes workload runs now counts as wanted too. Ages are set on the registry's storage, pulls recorded with their
times: nothing sleeps."""

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regkeeper.pulls.store import PullStore
from tests.integration.test_cli import rk
from tests.support import images
from tests.support.rkconfig import registry_entry, write_config
from tests.support.sample import age, truth

NAME = "local-registry"
REPO = "team/app"
PUSHED = {"hot": 60, "cold": 55, "early": 50, "late": 45, "fresh": 3}  # days ago
PULLS = {"hot": range(1, 60, 2), "early": [48], "late": [5], "fresh": [1]}  # days ago


def test_backtest_names_the_regretted_images_and_deletes_nothing(registry_factory, tmp_path, pull_store_url):
    reg = registry_factory()
    digests = {t: images.push_image(reg.url, REPO, t, seed=t, verify=False).digest for t in PUSHED}
    now = datetime.now(UTC)
    for t, days in PUSHED.items():
        age(reg.root, REPO, [t], (now - timedelta(days=days)).timestamp())
    store = PullStore(pull_store_url)
    store.mark_collection_start(NAME, now - timedelta(days=100))
    for t, ds in PULLS.items():
        for d in ds:
            store.record_pull(NAME, REPO, digests[t], now - timedelta(days=d), t, "containerd/1.7")
    store.heartbeat(now)
    store.close()
    gc = {"registry": NAME, "protect": [], "rules": [{"name": "week", "delete": {"olderThan": "7d"}}]}
    host = reg.url.split("://", 1)[1]
    deploy = {  # a recorded Kubernetes list: one Deployment runs `cold` (never pulled since)
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "prod"},
                "spec": {
                    "template": {"spec": {"containers": [{"name": "c", "image": f"{host}/{REPO}:cold"}]}}
                },
            }
        ],
    }
    (tmp_path / "kube.json").write_text(json.dumps(deploy))
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [registry_entry(reg, NAME, reclaim="none")],
        gc=gc,
        pulls={"store": pull_store_url},
        kubernetes={"snapshot": str(tmp_path / "kube.json")},
        stateDir=str(tmp_path / "state"),
    )
    before = truth(reg.url)
    out = rk("backtest", "--config", str(cfg), "--job", "gc", "--since", "90d")
    assert out.returncode == 0, out.stderr
    assert "Nothing was deleted" in out.stdout
    assert truth(reg.url) == before  # a backtest never deletes
    csvs = sorted(Path(tmp_path / "reports" / "backtest").glob("*.csv"))
    rows = [r for p in csvs for r in csv.DictReader(p.open()) if r.get("kind")]
    names = {d: t for t, d in digests.items()}
    replay = {names[r["digest"]] for r in rows if r["kind"] == "replay"}
    # cold is run by a workload now; early was pulled only before its deletion; fresh is too young
    assert replay == {"hot", "late", "cold"}
    cold = next(r for r in rows if r["kind"] == "replay" and names[r["digest"]] == "cold")
    assert cold["in_use"] and "prod" in cold["in_use"] and cold["pulls_after"] == "0"
    # now: cold is kept (in use), so no regret for it today
    assert {names[r["digest"]] for r in rows if r["kind"] == "now"} == {"hot", "early", "late"}
    late = next(r for r in rows if r["kind"] == "replay" and names[r["digest"]] == "late")
    assert late["rule"] == "gc/week" and late["pulled_after"] == (now - timedelta(days=5)).date().isoformat()
    assert late["day"] == (now - timedelta(days=38)).date().isoformat()


def test_backtest_bad_input_names_the_problem(tmp_path):
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [{"name": NAME, "type": "local", "url": "http://127.0.0.1:9"}],
        gc={"registry": NAME},
    )
    out = rk("backtest", "--config", str(cfg), "--job", "gc")
    assert out.returncode == 2 and "needs a `pulls` section" in out.stderr
    out = rk("backtest", "--config", str(cfg), "--job", "gc", "--since", "soon")
    assert out.returncode == 2 and "--since" in out.stderr
    cfg.write_text(cfg.read_text() + f"pulls: {{store: 'sqlite:///{tmp_path}/p.sqlite'}}\n")
    out = rk("backtest", "--config", str(cfg), "--job", "expire")
    assert out.returncode == 2 and "backtest --job expire: no tiers in the config" in out.stderr
    out = rk("backtest", "--config", str(cfg), "--job", "gc", "--since", "2h")
    assert out.returncode == 2 and "--since: at least 1d" in out.stderr


def test_pull_days_retention_drops_old_days_only(tmp_path, pull_store_url):
    """``pulls.dayRetention``: the receiver drops per-day counts older than it when it starts;
    the last pull per image stays (pulledWithin still sees it)."""
    from regkeeper.context import load_context
    from regkeeper.pulls.receiver import PullReceiver

    now = datetime.now(UTC)
    store = PullStore(pull_store_url)
    for days in (500, 45, 10):
        store.record_pull(NAME, REPO, "sha256:" + "a" * 64, now - timedelta(days=days))
    store.record_pull(NAME, REPO, "sha256:" + "b" * 64, now - timedelta(days=60))
    cfg = write_config(
        tmp_path / "regkeeper.yaml",
        [{"name": NAME, "type": "local", "url": "http://127.0.0.1:9"}],
        pulls={"store": pull_store_url, "dayRetention": "30d"},
    )
    ctx = load_context(cfg)
    rx = PullReceiver(ctx.config, listen=("127.0.0.1", 0)).start()
    rx.stop()
    days = store.pull_days(NAME)
    assert days == {(REPO, "sha256:" + "a" * 64): [((now - timedelta(days=10)).date(), 1)]}
    last = {(r["repository"], r["digest"]): r["last_pull"] for r in store.rows(NAME)}
    assert len(last) == 2  # the last pulls themselves are kept
    assert store.prune_days(now) == 1 and store.pull_days(NAME) == {}
    store.close()
