"""The pydantic base of every config section: unknown keys are refused (the loader suggests the
nearest valid one), fields are filled by their YAML alias (``keepLast``) or Python name."""

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, arbitrary_types_allowed=True, frozen=False
    )
