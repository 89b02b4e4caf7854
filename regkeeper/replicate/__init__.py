"""Cross-region replication: diff first, copy only what differs, byte for byte.

Where each concern lives:

- ``scope.py``      what a rule covers: rules, prefix naming, repositories, tag filters,
                    signatures following their subjects, the delete scope
- ``diff.py``       source vs target, pure: tags to copy, extraneous target tags
- ``plan_model.py`` the plan's data: ``TagCopy``, ``RepoPlan``, ``ReplicationPlan``
- ``plan.py``       ``plan_replication``: tags lists, HEADs, per-repository decisions; merge_plans
- ``execute.py``    ``Replicator``: copy phases, manifest closure and tag PUT, one reason per failed item
- ``referrers.py``  referrers with their subjects: the API-listed ones planned and copied after
                    the subject (into the target's ``sha256-<hex>`` index where it has no API),
                    deleted with an extraneous subject, read back
- ``blobs.py``      blob memory around the one blob transfer (``oci/transfer.py``): known
                    locations, mount hints across runs, blobs that failed this run
- ``delete.py``     deleteExtraneous: the one cap with the rule's maxDeleteFraction, the
                    reference map, the deletes through the one delete path (prune/delete.py)
- ``verify.py``     read-back of copied tags
- ``result.py``     ``RepoResult`` / ``ReplicationResult``: what a run did
- ``report.py``     the summary line and the run report
- ``run.py``        ``replicate_target``: one target end to end in one process

A plan with nothing to copy costs reads only; executing it writes nothing. Nothing is persisted
for correctness: the next run's diff finds what is still missing.
"""

from ..oci.transfer import MONOLITHIC_MAX
from .blobs import hints_file
from .delete import (
    check_delete_cap,
    deletable_plans,
    delete_extraneous,
    not_attempted,
    record_deletes,
)
from .diff import diff_tags, extraneous_tags
from .execute import Replicator, copy_phases, copy_repositories, copy_repository
from .plan import PREFETCH_MAX, merge_plans, plan_replication
from .plan_model import ReplicationPlan, RepoPlan, TagCopy
from .report import build_report, summary_line
from .result import ReplicationResult, RepoResult, new_result
from .run import replicate_target
from .scope import (
    in_delete_scope,
    scope_repositories,
    select_rules,
    select_tags,
    source_repository,
    tag_matches,
    target_repository,
)
from .verify import verify_copied

__all__ = [
    "TagCopy",
    "RepoPlan",
    "ReplicationPlan",
    "RepoResult",
    "ReplicationResult",
    "Replicator",
    "plan_replication",
    "copy_repository",
    "copy_repositories",
    "replicate_target",
    "select_tags",
    "diff_tags",
    "extraneous_tags",
    "check_delete_cap",
    "target_repository",
    "source_repository",
    "tag_matches",
    "copy_phases",
    "hints_file",
    "summary_line",
    "scope_repositories",
    "verify_copied",
    "select_rules",
    "merge_plans",
    "build_report",
    "new_result",
    "in_delete_scope",
    "delete_extraneous",
    "record_deletes",
    "not_attempted",
    "deletable_plans",
    "MONOLITHIC_MAX",
    "PREFETCH_MAX",
]
