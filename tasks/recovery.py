"""The recovery hook every flow runs first, before its plan (gc, expire, replicate, backup,
restore, capacity, nightly): this run becomes the owner of its run state (named by its flow run
id), and the read-only windows that dead runs left open are closed (``regkeeper.runstate``).
Each recovery is logged, said in every report of the run (:func:`add_notes`), alerted through
the capacity notify targets (``RegistryReadOnlyRecovered`` / ``RegistryReadOnly``), emitted as
a Prefect event, and counted in ``regkeeper_readonly_recovered_total`` when a Pushgateway is
configured. Recovery never fails the run; a dry run recovers too (the registry is put back the
way the dead run meant to leave it, which is not a change the dry run plans).
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from regkeeper.context import RunContext
from regkeeper.runstate import Owner, Recovery, RunState, recover_windows
from tasks.common import logger


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 - outside a flow run
        return None


def begin_run(ctx: RunContext, job: str) -> list[str]:
    """Name this run as owner of its run state and recover what dead runs left. Returns the
    notes every report of this run carries."""
    ctx.owner = Owner.current(job, _flow_run_id())
    return recover_run_state(ctx, ctx.owner)


def begin_run_config(config, job: str) -> list[str]:
    """:func:`begin_run` for a flow that has no RunContext of its own (nightly)."""
    ctx = RunContext(config)
    try:
        return begin_run(ctx, job)
    finally:
        ctx.close()


def add_notes(report, notes: list[str]) -> None:
    """Put the run's recovery notes first in a report (a Report)."""
    fresh = [n for n in notes if n and n not in report.notes]
    report.notes[:0] = fresh


@task(name="recover-run-state", retries=0, cache_policy=NO_CACHE)
def recover_run_state(ctx: RunContext, owner: Owner) -> list[str]:
    """Close read-only windows left open by dead runs; say so. Never raises."""
    log = logger()
    try:
        rs = RunState.for_config(ctx.config, owner)
        found = recover_windows(rs, config=ctx.config, ready=lambda name: _ready(ctx, name))
    except Exception as e:  # noqa: BLE001 - recovery must not stop the run
        log.error("run-state recovery could not run: %s", e)
        return [f"run-state recovery could not run (state directory {ctx.config.state_path()}): {e}"]
    notes = []
    for r in found:
        notes.append(r.note())
        if r.outcome == "recovered":
            log.warning("%s", r.note())
        elif r.outcome == "failed":
            log.error("%s", r.note())
        else:
            log.info("%s", r.note())
        if r.acted:
            notes += _announce(ctx.config, rs, r)
    return notes


def _ready(ctx: RunContext, name: str) -> None:
    from regkeeper.prune.reclaim import wait_ready

    wait_ready(ctx.client(name), timeout=60)


def _announce(config, rs: RunState, r: Recovery) -> list[str]:
    """Alert, event and metric for a window closed (or not) by this run; notes for what failed."""
    from regkeeper import capacity as cap

    w = r.window
    kind = "recovered" if r.outcome == "recovered" else "recovery-failed"
    alert = cap.ReadOnlyAlert(
        r.registry,
        kind,
        r.note(),
        details={
            "run": w.run,
            "job": w.owner.job,
            "pid": w.owner.pid,
            "host": w.owner.host,
            "started": w.started,
            "recovered by": rs.owner.run,
        },
    )
    notes = []
    try:
        from prefect.events import emit_event

        from regkeeper.capacity.readonly import event_payload

        name, resource, payload = event_payload(alert)
        emit_event(event=name, resource=resource, payload=payload)
    except Exception as e:  # noqa: BLE001 - the webhook alert must still go out
        logger().warning("read-only event not emitted: %s", e)
    cc = config.capacity
    for d in cap.notify_readonly(alert, cc.notify) if cc and cc.notify else []:
        if not d.ok:
            notes.append(f"the {kind} alert could not be delivered to {d.target}: {d.error}")
    if cc and cc.pushgateway and r.outcome == "recovered":
        try:
            _push_recovered(cc.pushgateway, r.registry, rs.recovered_count(r.registry))
        except Exception as e:  # noqa: BLE001 - metrics never fail a run
            logger().warning("recovery metric not pushed: %s", e)
    return notes


def _push_recovered(gateway: str, registry: str, count: int) -> None:
    from regkeeper.metrics import RunMetrics, push_metrics

    m = RunMetrics("recovery", registry)
    m.metric("regkeeper_readonly_recovered_total").labels(registry=registry).set(count)
    push_metrics(gateway, m.collector, flow="recovery", registry=registry)
