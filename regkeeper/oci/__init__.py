"""The OCI Distribution client package (see client.py until the split lands)."""

from .client import DEFAULT_CHUNK, IMAGE_CONFIG_TYPES, ManifestHead, RegistryClient, parse_manifest

__all__ = ["DEFAULT_CHUNK", "IMAGE_CONFIG_TYPES", "ManifestHead", "RegistryClient", "parse_manifest"]
