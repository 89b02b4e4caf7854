"""Error types. Every error names what went wrong: config key, registry, repository, HTTP status."""


class RegkeeperError(Exception):
    """Base class for all regkeeper errors."""


class ConfigError(RegkeeperError):
    """The configuration file is invalid. The message names the file and the key path."""


class SecretError(ConfigError):
    """A secret reference could not be resolved (names the reference, never the value)."""


class RegistryError(RegkeeperError):
    """A registry call failed. Names the registry, the call (method + path), the repository and
    the HTTP status when known; ``transient`` says whether the failure was of a kind worth
    retrying (regkeeper.retry), ``attempts`` how many attempts were made when retries ran out."""

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        status: int | None = None,
        url: str | None = None,
        method: str | None = None,
        path: str | None = None,
        transient: bool = False,
        attempts: int | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ):
        self.registry = registry
        self.repository = repository
        self.status = status
        self.url = url
        self.method = method
        self.path = path
        self.transient = transient
        self.attempts = attempts
        self.detail = detail
        self.retry_after = retry_after
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        # built when shown: ``attempts`` is set by the retry loop after the error was raised
        parts = []
        if self.registry:
            parts.append(f"registry {self.registry!r}")
        if self.repository:
            parts.append(f"repository {self.repository!r}")
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        text = f"{self.method} {self.path}: {self.message}" if self.method and self.path else self.message
        if self.attempts:
            text += f" after {self.attempts} attempt{'s' if self.attempts != 1 else ''}, retries exhausted"
        if self.detail:
            text += f" ({self.detail})"
        prefix = ", ".join(parts)
        return f"{prefix}: {text}" if prefix else text

    def __reduce__(self):
        # keep every attribute across pickling (Prefect results, process pools)
        return type(self), (self.message,), dict(self.__dict__)


class AuthError(RegistryError):
    """401/403 from the registry or its token service. Never retried."""


class NotFoundError(RegistryError):
    """404: the manifest, blob or repository is not there."""


class SourceBlobMissing(NotFoundError):
    """404 from the source of a blob transfer (regkeeper.oci.transfer): the blob is gone from
    where it was to be copied from (the caller decides: replicate records the item as vanished)."""


class DeletesDisabledError(RegistryError):
    """405 on DELETE: the registry has deletes disabled (storage.delete.enabled: false)."""


class ReadOnlyError(RegistryError):
    """405 on a write while the registry is in read-only maintenance mode."""


class DigestMismatchError(RegistryError):
    """Fetched bytes do not hash to the digest they were fetched by."""


class UnsupportedManifestError(RegistryError):
    """A manifest kind regkeeper does not handle (e.g. Docker schema1)."""


class RefusedError(RegkeeperError):
    """A run refused to act (blast-radius cap, fail-closed Kubernetes read). Nothing was changed."""


# --------------------------------------------------------------------------- by job


class BackupError(RegkeeperError):
    """A backup target problem or an unusable snapshot. Names the target, key or snapshot."""


class ObjectMissing(BackupError):
    """The key does not exist on the target."""


class CapacityError(RegkeeperError):
    """Storage could not be measured (names the path / bucket and the problem)."""


class NotifyError(RegkeeperError):
    """A webhook refused or could not be reached (URL shown redacted, never in full)."""


class MetricsPushError(RegkeeperError):
    """The Pushgateway refused or could not be reached (URL shown redacted)."""


class StateError(RegkeeperError):
    """The state directory cannot be written or read (names the path)."""


class KubeSnapshotError(RegkeeperError):
    """A recorded snapshot file could not be read or understood (names the file and why)."""


class KubeReadError(RefusedError):
    """Kubernetes could not be fully read and fail-closed is on; carries the context errors."""

    def __init__(self, message: str, errors: list):
        super().__init__(message)
        self.errors = list(errors)


class MalformedObjectError(RegkeeperError):
    """A field of an API object has the wrong JSON type, so the images in it cannot be read.

    ``field`` is the path inside the object (``spec.template.spec.containers[0]``); the message
    says what was found and what was expected.
    """

    def __init__(self, field: str, found: str, expected: str):
        super().__init__(f"{field} is {found}, expected {expected}")
        self.field = field
