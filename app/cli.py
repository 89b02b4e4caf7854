"""Command line: ``regkeeper inventory | run <flow> | undo | quarantine list | snapshots list | serve |
events serve | backtest | demo | check | alerts install``.

Exit status: 0 success (dry runs included), 1 the run failed, 2 bad usage or configuration,
3 the run refused to act (blast-radius cap, fail-closed Kubernetes read). The last lines say why.
"""

import argparse
import functools
import json
import logging
import os
import sys
import time

from app.quarantine import add_quarantine_parsers, as_undo_run, quarantine_list, undo_precheck
from flows.jobs import JOBS, flow_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


def _quiet_prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the temporary local server takes 6-10 s to start, much more on a loaded machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="regkeeper", description="Keep container image registries healthy.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    inv = sub.add_parser("inventory", help="scan a registry and print its tags")
    inv.add_argument("--config", help="config file (default $REGKEEPER_CONFIG or ./regkeeper.yaml)")
    inv.add_argument("--registry", help="registry name from mirrorRepositories (default: the first)")
    inv.add_argument("--format", choices=("table", "csv", "json"), default="table")
    inv.add_argument("--include", action="append", help="repository glob (repeatable, ** crosses /)")
    inv.add_argument("--exclude", action="append", help="repository glob to skip (repeatable)")

    run = sub.add_parser(
        "run", help="run one job now (in Prefect's local mode unless PREFECT_API_URL is set)"
    )
    run.add_argument("flow", choices=tuple(JOBS))
    run.add_argument("--config", help="config file")
    run.add_argument("--registry", help="registry name (default: the job's configured one)")
    run.add_argument("--dry-run", action="store_true", help="plan and report; change nothing")
    run.add_argument("--force", action="store_true", help="override the blast-radius cap")
    run.add_argument("--rule", help="replicate: the rule name (default: every rule)")
    run.add_argument("--snapshot", default="latest", help="restore: snapshot id or 'latest'")
    run.add_argument("--repositories", default="**", help="restore: repository glob")
    run.add_argument(
        "--apply", action="store_true", help="restore: actually write (restore is a dry run by default)"
    )

    add_quarantine_parsers(sub)

    snaps = sub.add_parser("snapshots", help="backup snapshots")
    snaps.add_argument("action", choices=("list",))
    snaps.add_argument("--config", help="config file")
    snaps.add_argument("--registry", help="registry name")

    chk = sub.add_parser("check", help="validate the config and reach every registry")
    chk.add_argument("--config", help="config file")

    alerts = sub.add_parser(
        "alerts", help="install the Prefect automation that sends capacity and read-only alerts"
    )
    alerts.add_argument("action", choices=("install",))
    alerts.add_argument("--config", help="config file")
    alerts.add_argument(
        "--webhook",
        help="secret reference of the webhook URL (env:NAME, file:/path, prefect-secret:NAME); "
        "default: capacity.automation.webhook",
    )

    srv = sub.add_parser("serve", help="serve every deployment from this process (prefect serve)")
    srv.add_argument(
        "--events",
        action="store_true",
        help="also run the pull-event receiver (the config's `pulls` section) in this process",
    )
    ev = sub.add_parser("events", help="the registry pull-event receiver (retention by last pull)")
    ev.add_argument("action", choices=("serve",))
    ev.add_argument("--config", help="config file (default $REGKEEPER_CONFIG or ./regkeeper.yaml)")
    ev.add_argument("--listen", help="host:port (default: pulls.listen)")
    from app.backtest import add_parser as add_backtest

    add_backtest(sub)
    demo = sub.add_parser("demo", help="run the nightly flow against a local demo registry")
    demo.add_argument("--workdir", default=None, help="where the demo keeps its registry and reports")
    demo.add_argument("--keep-running", action="store_true", help="leave the demo registry running")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Our own loggers only: Prefect configures its own handlers for flow and task runs, and a
    # root handler here would print every Prefect line twice.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    rk_log = logging.getLogger("regkeeper")
    rk_log.addHandler(handler)
    rk_log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from regkeeper.errors import ConfigError, RefusedError, RegkeeperError

    try:
        if args.cmd == "inventory":
            from app.inventory import inventory_cmd

            return inventory_cmd(args)
        if args.cmd == "run":
            return _run(args)
        if args.cmd == "quarantine":
            return quarantine_list(args)
        if args.cmd == "undo":
            why = undo_precheck(args)  # before Prefect: an unknown run is one line, not a traceback
            if why:
                print(f"regkeeper: undo: {why}", file=sys.stderr)
                return EXIT_USAGE
            return _run(as_undo_run(args))
        if args.cmd == "snapshots":
            return _snapshots(args)
        if args.cmd == "check":
            return _check(args)
        if args.cmd == "alerts":
            return _alerts(args)
        if args.cmd == "backtest":
            from app.backtest import backtest_cmd

            return backtest_cmd(args)
        if args.cmd == "events":
            from app.events import events_serve

            return events_serve(args)
        if args.cmd == "serve":
            _quiet_prefect_env()
            from app.events import start_receiver
            from deployments.serve import main as serve_main

            rx = start_receiver() if args.events else None
            try:
                return serve_main() or 0
            finally:
                if rx is not None:
                    rx.stop()
        if args.cmd == "demo":
            _quiet_prefect_env()
            from app.demo import run_demo

            return run_demo(workdir=args.workdir, keep_running=args.keep_running)
    except ConfigError as e:
        print(f"regkeeper: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RefusedError as e:
        print(f"regkeeper: refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except RegkeeperError as e:
        print(f"regkeeper: failed: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _run(args) -> int:
    _quiet_prefect_env()
    from regkeeper.errors import RefusedError, RegkeeperError

    t0 = time.perf_counter()
    import prefect  # noqa: F401 - measured: the fixed cost of a CLI run

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.config:
        os.environ["REGKEEPER_CONFIG"] = os.path.abspath(args.config)
    # validate the config before paying for Prefect's server
    from regkeeper.config import load_config
    from regkeeper.context import resolve_config_path

    load_config(resolve_config_path(args.config))
    kw = _flow_kwargs(args, os.environ.get("REGKEEPER_CONFIG"))
    clock = _FlowClock(flow_of(args.flow))
    clock.setup = time.perf_counter() - t0  # the flow's modules imported, the config checked
    error: Exception | None = None
    result = None
    try:
        result = clock.run(**kw)
    except Exception as e:  # noqa: BLE001 - said below, after the fixed cost
        error = e
    finally:
        t_flush = _stop_ephemeral_server() or 0.0
    print(f"regkeeper: {args.flow} {clock.describe(t_import, t_flush)}", file=sys.stderr)
    if isinstance(error, (RefusedError, RegkeeperError)):
        raise error
    if error is not None:  # the flow failed; say why and exit non-zero
        print(f"regkeeper: {args.flow} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, dict):
        files = result.get("files") or {}
        if files.get("html"):
            print(f"report: {files['html']}")
        summ = result.get("summary") or {}
        if summ:
            print(json.dumps(summ, default=str))
        status = result.get("status")
        if status in ("failed",):
            return EXIT_FAILED
        if status == "refused":
            return EXIT_REFUSED
    return EXIT_OK


class _FlowClock:
    """Where the time of one flow call goes: the flow's body (the work) vs Prefect's part before
    it (server connect, or its temporary local server start, flow run creation, parameter
    validation, state changes) and after it (final state, result)."""

    def __init__(self, flow):
        self.flow = flow
        self.setup = self.called = self.body_start = self.body_end = self.returned = 0.0

    def run(self, **kw):
        inner = self.flow.fn

        @functools.wraps(inner)
        def body(*a, **k):
            self.body_start = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.body_end = time.perf_counter()

        self.flow.fn = body  # Prefect calls flow.fn with the validated parameters
        self.called = time.perf_counter()
        try:
            return self.flow(**kw)
        finally:
            self.returned = time.perf_counter()
            self.flow.fn = inner

    def describe(self, t_import: float, t_flush: float) -> str:
        """``finished in ...: work ..., fixed cost ... = import + start + end + flush``."""
        total = self.returned - self.called
        if not self.body_start:  # the flow never started its body (parameters, server)
            return f"ended after {total:.1f}s in Prefect before the flow started (import prefect {t_import:.1f}s)"
        work = self.body_end - self.body_start
        start = self.body_start - self.called
        end = self.returned - self.body_end
        fixed = t_import + self.setup + start + end + t_flush
        where = (
            "Prefect server connect"
            if os.environ.get("PREFECT_API_URL")
            else "Prefect's temporary local server start (no PREFECT_API_URL)"
        )
        return (
            f"finished: work {work:.2f}s; fixed cost {fixed:.2f}s = import prefect {t_import:.2f}s "
            f"+ flow module and config {self.setup:.2f}s + flow run start {start:.2f}s ({where}, "
            f"flow run creation) + flow run end {end:.2f}s (final state, heartbeat stop) + log flush "
            f"{t_flush:.2f}s"
        )


def _stop_ephemeral_server() -> float:
    """Flush Prefect's log and event workers, and stop its temporary local server now (it would
    otherwise stop at exit and log after our last line, which must say why the run ended as it
    did). Returns the seconds it took."""
    t0 = time.perf_counter()
    try:  # flush Prefect's log and event workers first, so nothing talks to a stopped server
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception:  # noqa: BLE001 - best effort
        pass
    if os.environ.get("PREFECT_API_URL"):
        return time.perf_counter() - t0  # a real server: no temporary one (importing it costs ~2 s)
    try:
        from prefect.server.api.server import SubprocessASGIServer

        for srv in list(SubprocessASGIServer._instances.values()):
            srv.stop()
    except Exception:  # noqa: BLE001 - best effort
        pass
    return time.perf_counter() - t0


def _flow_kwargs(args, config_path: str | None) -> dict:
    """The flow's parameters from the command line (the jobs map says which it takes)."""
    job = JOBS[args.flow]
    extra: dict = {}
    dry_run = args.dry_run
    if args.flow == "replicate":
        extra["rule"] = args.rule
    if args.flow == "restore":
        extra.update(snapshot=args.snapshot, repositories=args.repositories)
        dry_run = not args.apply or args.dry_run
    if args.flow == "undo":
        extra.update(run_id=args.run, repositories=args.repositories, tags=args.tags)
    return job.kwargs(
        config_path=config_path, dry_run=dry_run, registry=args.registry, force=args.force, **extra
    )


def _snapshots(args) -> int:
    from regkeeper.backup import list_snapshots_cli
    from regkeeper.context import load_context

    ctx = load_context(args.config)
    rows = list_snapshots_cli(ctx.config, args.registry)
    if not rows:
        print("no snapshots")
        return EXIT_OK
    cols = list(rows[0].keys())
    print("  ".join(cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")) for c in cols))
    return EXIT_OK


def _alerts(args) -> int:
    """``regkeeper alerts install``: the webhook block and the automation, on the Prefect server
    PREFECT_API_URL names (the URL itself is never printed)."""
    _quiet_prefect_env()
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from app.alerts import EVENTS, install
    from regkeeper.context import load_context

    if not PREFECT_API_URL.value():
        print(
            "regkeeper: PREFECT_API_URL is not set: point it at your Prefect server "
            "(e.g. http://127.0.0.1:4200/api); an automation on a temporary server would vanish",
            file=sys.stderr,
        )
        return EXIT_USAGE
    ctx = load_context(args.config)
    done = install(ctx.config, args.webhook)
    print(f"webhook block {done.block} saved (posts to {done.target})")
    print(
        f"automation '{done.automation}' {'created' if done.created else 'updated'}: "
        f"on {', '.join(EVENTS)} it notifies through {done.block}"
    )
    ui = PREFECT_UI_URL.value()
    if ui:
        print(f"see it: {ui.rstrip('/')}/automations/automation/{done.automation_id}")
    return EXIT_OK


def _check(args) -> int:
    from regkeeper.context import load_context
    from regkeeper.errors import RegkeeperError

    ctx = load_context(args.config)
    bad = 0
    for rc in ctx.config.mirror_repositories:
        if not rc.url:
            print(f"{rc.name}: no url (proxy known only by upstream): skipped")
            continue
        try:
            ctx.client(rc.name).ping()
            print(f"{rc.name}: ok ({rc.url})")
        except RegkeeperError as e:
            bad += 1
            print(f"{rc.name}: {e}")
    from app.events import check_pulls

    bad += check_pulls(ctx.config)
    return EXIT_FAILED if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
