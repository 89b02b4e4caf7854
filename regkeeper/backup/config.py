"""The backup section of the configuration: which registries a run covers, and the section
itself (a clear error when it is missing)."""

from .store import BackupError


def backup_registries(cfg, registry: str | None = None, notes: list[str] | None = None) -> list[str]:
    """The registries a backup run covers: the one asked for, else ``backup.registries``, else
    every registry with an API URL but a proxy (pull-through cache): each proxy left out is
    named in ``notes``; one asked for by name is refused (``RefusedError``)."""
    if registry:
        rc = cfg.registry(registry)
        rc.refuse_proxy("backup")
        return [rc.name]
    if cfg.backup is not None and cfg.backup.registries:
        return list(cfg.backup.registries)  # no proxy: checked when the config loads
    out = []
    for r in cfg.mirror_repositories:
        why = r.proxy_refusal("backup")
        if why and r.url and notes is not None:
            notes.append(f"{r.name}: not backed up: it is type proxy: {why}")
        elif r.url and not why:
            out.append(r.name)
    return out


def require_backup_config(cfg):
    if cfg.backup is None:
        raise BackupError(
            f"{cfg.source or 'config'}: no backup section: set backup.target "
            "(s3://bucket/prefix or file:///path)"
        )
    return cfg.backup
