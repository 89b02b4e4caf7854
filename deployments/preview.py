"""The preview deployments' flows: gc, expire and replicate as dry runs that cannot be anything
else (the "show me what you would delete" button, beside the scheduled deployments).

Each is registered under the job's own flow name (``gc``, ``expire``, ``replicate``), so a
preview run sits with the job's other runs in the UI and publishes the same reports and
artifacts (marked DRY RUN). ``dry_run`` is a parameter fixed to ``true`` (``Literal[True]``):
the Prefect UI's run form shows it and the server refuses ``false`` (the deployments enforce
their parameter schema), and there is no ``force``. The other parameters mirror the job's
(``tests/flows/test_deployments.py`` checks they stay in step).
"""

from typing import Annotated, Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.expire import expire
from flows.gc import gc
from flows.params import ConfigPath, ExpireRegistry, GcDays, GcKeepLast, GcRegistry, ReplicationRule
from flows.replicate import replicate

DryRun = Annotated[
    Literal[True],
    Field(
        description="Always true here: a preview plans and reports; it changes nothing",
        json_schema_extra={"readOnly": True},  # the UI's run form shows it, not editable
    ),
]


@flow(
    name="gc",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]  # prefect typing gap
    log_prints=False,
    validate_parameters=True,
)
def gc_preview(
    registry: GcRegistry = None,
    days: GcDays = None,
    keep_last: GcKeepLast = None,
    dry_run: DryRun = True,
    config_path: ConfigPath = None,
) -> dict:
    """What gc would delete, with the bytes it would free; deletes nothing.

    Args:
        registry: registry name from mirrorRepositories (default: gc.registry, else the first).
        days: delete versions older than this many days (default: gc.days).
        keep_last: always keep the newest N versions per repository (default: gc.keepLast).
        dry_run: always true: a preview changes nothing.
        config_path: the config file.
    """
    return gc.fn(registry=registry, days=days, keep_last=keep_last, dry_run=True, config_path=config_path)


@flow(
    name="expire",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]  # prefect typing gap
    log_prints=False,
    validate_parameters=True,
)
def expire_preview(
    registry: ExpireRegistry = None,
    dry_run: DryRun = True,
    config_path: ConfigPath = None,
) -> dict:
    """What the tier policies would delete (and which repositories they would remove whole);
    deletes nothing.

    Args:
        registry: registry name (default: expire.registry, else gc.registry, else the first).
        dry_run: always true: a preview changes nothing.
        config_path: the config file.
    """
    return expire.fn(registry=registry, dry_run=True, config_path=config_path)


@flow(
    name="replicate",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]  # prefect typing gap
    log_prints=False,
    validate_parameters=True,
)
def replicate_preview(
    rule: ReplicationRule = None,
    dry_run: DryRun = True,
    config_path: ConfigPath = None,
) -> dict:
    """What replication would copy (and, with deleteExtraneous, delete) on each target; writes
    nothing.

    Args:
        rule: the replication rule to run (its `name`, else `<from>-to-<to+to>`); default: all rules.
        dry_run: always true: a preview writes nothing to any target.
        config_path: the config file.
    """
    return replicate.fn(rule=rule, dry_run=True, config_path=config_path)
