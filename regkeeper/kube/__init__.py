"""Which images Kubernetes is using: the in-use protection of gc and expire.

All Prefect-free, one concern per module:

* ``refs``: the image reference grammar (:func:`parse_image_ref`, :class:`ImageRef`, Docker Hub
  defaults) and registry hosts (:func:`normalize_host`, :func:`registry_hosts`);
* ``workloads``: the kinds read (:data:`RESOURCES`) and the pod-spec fields holding images
  (:func:`extract_images`, type-checked: :class:`MalformedObjectError` names the field);
  ``collect``: objects to references, shared by the two readers; a malformed object fails its
  context, named by kind, namespace/name and field;
* ``inuse``: the scan and the in-use rule (:class:`InUseScan`, :class:`RegistryUsage`: a digest in
  use protects every tag on it, a tag in use protects its current digest; fail-closed refusal);
* ``kubeconfig``, ``api``, ``api_errors``, ``fastjson``: reading live clusters
  (:func:`read_in_use`);
* ``snapshot``: recorded list responses (:func:`load_snapshot`);
* ``from_config``: the source a config names (:func:`scan_from_config`).
"""

from .api import read_in_use
from .from_config import scan_from_config
from .inuse import (
    ContextError,
    InUseScan,
    InUseSource,
    InvalidRef,
    KubeReadError,
    RegistryUsage,
)
from .refs import ImageRef, normalize_host, parse_image_ref, registry_hosts
from .snapshot import KubeSnapshotError, load_snapshot
from .workloads import RESOURCES, MalformedObjectError, extract_images

__all__ = [
    "ImageRef",
    "parse_image_ref",
    "normalize_host",
    "registry_hosts",
    "InUseSource",
    "ContextError",
    "InvalidRef",
    "InUseScan",
    "RegistryUsage",
    "KubeReadError",
    "KubeSnapshotError",
    "MalformedObjectError",
    "RESOURCES",
    "read_in_use",
    "load_snapshot",
    "scan_from_config",
    "extract_images",
]
