"""The backup section of the configuration: which registries a run covers, and the section
itself (a clear error when it is missing)."""

from .store import BackupError


def backup_registries(cfg, registry: str | None = None) -> list[str]:
    """The registries a backup run covers: the one asked for, else ``backup.registries``, else
    every registry with an API URL."""
    if registry:
        return [cfg.registry(registry).name]
    if cfg.backup is not None and cfg.backup.registries:
        return list(cfg.backup.registries)
    return [r.name for r in cfg.mirror_repositories if r.url]


def require_backup_config(cfg):
    if cfg.backup is None:
        raise BackupError(
            f"{cfg.source or 'config'}: no backup section: set backup.target "
            "(s3://bucket/prefix or file:///path)"
        )
    return cfg.backup
