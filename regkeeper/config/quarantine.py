"""``quarantine``: every gc, expire and replication ``deleteExtraneous`` delete is held under a
namespace of the registry itself for ``window`` before any byte is reclaimed, and can be undone
(``regkeeper/quarantine/``). Absent, or ``window: 0``: off, deletes are final at once."""

import re
from datetime import timedelta

from pydantic import field_validator

from .model import _Model
from .units import Duration

# a repository path component (distribution's grammar), one or more joined by "/"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAMESPACE_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


class QuarantineConfig(_Model):
    window: Duration = timedelta(0)
    namespace: str = "regkeeper-quarantine"

    @field_validator("window")
    @classmethod
    def _window(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError("must not be negative (0 turns the quarantine off)")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _NAMESPACE_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a repository name (lowercase letters, digits, . _ - separators, / between parts)"
            )
        return v

    @property
    def enabled(self) -> bool:
        return self.window > timedelta(0)
