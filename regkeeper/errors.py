"""Error types. Every error names what went wrong: config key, registry, repository, HTTP status."""


class RegkeeperError(Exception):
    """Base class for all regkeeper errors."""


class ConfigError(RegkeeperError):
    """The configuration file is invalid. The message names the file and the key path."""


class SecretError(ConfigError):
    """A secret reference could not be resolved (names the reference, never the value)."""


class RegistryError(RegkeeperError):
    """A registry call failed. Carries the registry name, repository and HTTP status when known."""

    def __init__(self, message: str, *, registry: str | None = None, repository: str | None = None,
                 status: int | None = None, url: str | None = None):
        self.registry = registry
        self.repository = repository
        self.status = status
        self.url = url
        parts = []
        if registry:
            parts.append(f"registry {registry!r}")
        if repository:
            parts.append(f"repository {repository!r}")
        if status is not None:
            parts.append(f"HTTP {status}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message = message


class AuthError(RegistryError):
    """401/403 from the registry or its token service. Never retried."""


class NotFoundError(RegistryError):
    """404: the manifest, blob or repository is not there."""


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
