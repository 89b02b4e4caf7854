"""Which images Kubernetes is using (being split into one module per concern)."""

from .api import (  # noqa: F401
    RESOURCES, ContextError, ImageRef, InUseScan, InUseSource, InvalidRef, KubeReadError, KubeSnapshotError,
    RegistryUsage, extract_images, load_snapshot, normalize_host, parse_image_ref, read_in_use, registry_hosts,
    scan_from_config,
)

__all__ = [
    "ImageRef", "parse_image_ref", "normalize_host", "registry_hosts",
    "InUseSource", "ContextError", "InvalidRef", "InUseScan", "RegistryUsage",
    "KubeReadError", "KubeSnapshotError", "RESOURCES",
    "read_in_use", "load_snapshot", "scan_from_config", "extract_images",
]
