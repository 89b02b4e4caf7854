"""Secret references: ``env:NAME``, ``file:/path``, ``prefect-secret:block-name`` (resolver
registered by the Prefect task layer). Resolved only when used, masked in every repr, log line
and exception; a resolution error names the config key, never the value."""

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from ..errors import SecretError

_SECRET_RESOLVERS: dict[str, Callable[[str], str]] = {}


def register_secret_resolver(scheme: str, fn: Callable[[str], str]) -> None:
    """Register a resolver for ``scheme:NAME`` references (the Prefect task layer registers
    ``prefect-secret``; the core stays Prefect-free)."""
    _SECRET_RESOLVERS[scheme] = fn


def _env_resolver(name: str) -> str:
    if name not in os.environ:
        raise SecretError(f"environment variable {name} is not set")
    return os.environ[name]


def _file_resolver(path: str) -> str:
    try:
        return Path(os.path.expanduser(path)).read_text().strip()
    except OSError as e:
        raise SecretError(f"secret file {path} cannot be read: {e.strerror}") from None


register_secret_resolver("env", _env_resolver)
register_secret_resolver("file", _file_resolver)


class Secret:
    """A secret value given as a reference. ``str()``/``repr()`` never show a resolved value.

    ``env:NAME``, ``file:/path``, ``prefect-secret:block-name`` are references. A bare literal is
    accepted (the seed's examples use them) but masked the same way and flagged ``literal``.
    """

    __slots__ = ("ref", "key", "_value")
    _REF_RE = re.compile(r"^(env|file|prefect-secret):(.+)$")

    def __init__(self, ref: str, key: str = ""):
        self.ref = ref
        self.key = key
        self._value: str | None = None

    @property
    def scheme(self) -> str:
        m = self._REF_RE.match(self.ref)
        return m.group(1) if m else "literal"

    @property
    def literal(self) -> bool:
        return self.scheme == "literal"

    def describe(self) -> str:
        """Safe description: ``env:REG_PASS`` for references, ``<literal>`` for literals."""
        return "<literal>" if self.literal else self.ref

    def get(self) -> str:
        """Resolve the reference (cached). Raises SecretError naming the key and reference."""
        if self._value is not None:
            return self._value
        m = self._REF_RE.match(self.ref)
        if not m:
            self._value = self.ref
            return self._value
        scheme, name = m.group(1), m.group(2)
        fn = _SECRET_RESOLVERS.get(scheme)
        where = f"{self.key}: " if self.key else ""
        if fn is None:
            raise SecretError(
                f"{where}cannot resolve {scheme}:{name}: no resolver for '{scheme}' "
                "(prefect-secret references resolve inside Prefect flows)"
            )
        try:
            self._value = fn(name)
        except SecretError as e:
            raise SecretError(f"{where}{e}") from None
        except Exception as e:  # resolver failures must not leak values
            raise SecretError(f"{where}cannot resolve {scheme}:{name}: {type(e).__name__}") from None
        return self._value

    def check(self) -> None:
        self.get()

    def __repr__(self) -> str:
        return f"Secret({self.describe()})"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self):
        return hash(self.ref)

    def __reduce__(self):
        # a pickled Secret (a task argument sent to a Dask worker) carries the reference, never
        # the resolved value: the receiving process resolves it again when it needs it
        return (Secret, (self.ref, self.key))


def _to_secret(v: Any) -> Secret:
    if isinstance(v, Secret):
        return v
    if v is None:
        raise ValueError("secret must not be empty")
    if not isinstance(v, str) or not v:
        raise ValueError("secret must be a string reference like env:NAME or prefect-secret:NAME")
    return Secret(v)


SecretStr = Annotated[Secret, BeforeValidator(_to_secret), PlainSerializer(lambda s: s.describe())]
