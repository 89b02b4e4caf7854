"""Ordered ``rules:`` of a tier or of gc (issue 13 part 3): each selects tags by glob and
``tagStatus`` (as ECR) and says what keeps and what deletes.

.. code-block:: yaml

    rules:
      - name: pull-requests           # optional; names the decisions (default rules[<i>])
        tags: ["pr-*"]                # tag globs (regkeeper.globs), default ["*"]
        tagStatus: tagged             # tagged (default) | untagged | any
        keep: {last: 3}               # keep conditions: last N images of this selection,
                                      #   newerThan D (pushed less than D ago), pulledWithin D
        delete: {olderThan: 7d}       # delete condition: pushed more than D ago

Keep wins over delete (Artifact Registry cleanup policies): a tag is deleted only when some
selecting rule's delete condition holds and no selecting rule's keep condition does; a tag no
rule selects is kept. Order decides which rule is named when several agree. The rules are turned
into ``policy.rules.RepoPolicy.rules`` (``policy/ordered.py``): one engine.
"""

from typing import Literal

from pydantic import Field, model_validator

from .model import _Model
from .units import Duration

TagStatus = Literal["tagged", "untagged", "any"]


class KeepConditions(_Model):
    last: int | None = Field(None, ge=0)  # the newest N images (digests) of the rule's selection
    newer_than: Duration | None = Field(None, alias="newerThan")  # pushed less than this long ago
    pulled_within: Duration | None = Field(None, alias="pulledWithin")  # needs the `pulls` section

    @model_validator(mode="after")
    def _some(self):
        if self.last is None and self.newer_than is None and self.pulled_within is None:
            raise ValueError("keep needs at least one condition: last, newerThan or pulledWithin")
        return self


class DeleteConditions(_Model):
    older_than: Duration = Field(alias="olderThan")  # pushed more than this long ago (0s: any age)


class RuleConfig(_Model):
    name: str | None = Field(None, min_length=1)
    tags: list[str] | None = None
    tag_status: TagStatus = Field("tagged", alias="tagStatus")
    keep: KeepConditions | None = None
    delete: DeleteConditions | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.keep is None and self.delete is None:
            raise ValueError("a rule needs keep, delete or both")
        if self.tag_status == "untagged" and self.tags:
            raise ValueError("tags: an untagged selection has no tags to match (tagStatus: untagged)")
        return self


def pull_windows(rules: list[RuleConfig]) -> list:
    """The ``keep.pulledWithin`` windows of a rule list."""
    return [r.keep.pulled_within for r in rules if r.keep and r.keep.pulled_within is not None]
