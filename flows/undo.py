"""undo: put what a gc, expire or deleteExtraneous run deleted back from the quarantine, under
its original repositories and tags (digests identical, every restored tag verified). A dry run
unless dry_run is false; by hand only (deployment undo/undo-manual)."""

from typing import Annotated, Optional

from prefect import flow
from pydantic import Field

from flows.params import ConfigPath
from flows.runner import RegkeeperTaskRunner
from regkeeper.context import RunContext
from regkeeper.errors import RegkeeperError
from regkeeper.quarantine.report import undo_report
from regkeeper.util import utcnow
from tasks.common import publish_report, report_job_metrics, with_reports
from tasks.quarantine import undo_run
from tasks.recovery import add_notes, begin_run


@flow(name="undo", task_runner=RegkeeperTaskRunner(), log_prints=False, validate_parameters=True)
def undo(
    run_id: Annotated[
        str,
        Field(min_length=1, description="The run whose deletes to undo (see `regkeeper quarantine list`)"),
    ],
    registry: Annotated[
        Optional[str], Field(description="Registry name from mirrorRepositories (default: the first)")
    ] = None,
    repositories: Annotated[
        Optional[str], Field(description="Only original repositories matching this glob (** crosses /)")
    ] = None,
    tags: Annotated[
        Optional[str], Field(description="Only tags matching this glob (their children and referrers follow)")
    ] = None,
    dry_run: Annotated[
        bool, Field(description="Say what would be restored; change nothing (default)")
    ] = True,
    config_path: ConfigPath = None,
) -> dict:
    """Undo a run's deletes from the quarantine: children and referrers first, digests identical,
    each restored tag verified; a tag pushed to another image since the delete is not overwritten
    (reported). Undone entries leave the quarantine.

    Args:
        run_id: the run to undo: its id is in the gc / expire report (`undo this run`) and in
            `regkeeper quarantine list`.
        registry: the registry name (empty: the first in mirrorRepositories).
        repositories: only these original repositories, a glob such as `team/**` (** crosses /;
            empty: every repository of the run).
        tags: only tags matching this glob, such as `v1.*` (their children and referrers follow;
            empty: every tag of the run).
        dry_run: on (the default): only report what would come back and what would not; switch
            it off to restore.
        config_path: the config file (empty: $REGKEEPER_CONFIG of the serving process).
    """
    ctx = RunContext.load(config_path)
    name = ctx.registry_name(registry)
    started = utcnow()
    try:
        notes = begin_run(ctx, "undo")
        result = error = None
        try:
            result = undo_run(ctx, name, run_id, repositories, tags, not dry_run)
        except RegkeeperError as e:
            error = str(e)
        report = undo_report(name, run_id, result, error, started)
        add_notes(report, notes)
        publish_report(report, str(ctx.reports_dir()))
        ok = report.status in ("ok", "dry-run")
        report_job_metrics(ctx, "undo", name, ok, {"items_failed": len(result.failed) if result else 0})
        if not ok:
            raise with_reports(
                RegkeeperError(f"undo of {run_id} on {name} failed: {error or report.notes[:3]}"), [report]
            )
        return report.to_dict()
    finally:
        ctx.close()
