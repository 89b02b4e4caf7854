"""The configured source of in-use images: a recorded snapshot file, or the live contexts.

:func:`scan_from_config` is what gc and expire call; it never raises for an unreadable cluster
or snapshot, it returns a scan whose ``errors`` say why (the caller applies ``failClosed``).
"""

from pathlib import Path

from .api import read_in_use
from .inuse import ContextError, InUseScan
from .snapshot import KubeSnapshotError, load_snapshot


def scan_from_config(kcfg) -> InUseScan:
    """Read in-use images as a ``config.KubernetesConfig`` says: its ``snapshot`` file when set,
    else the live contexts. Never raises for an unreadable cluster or snapshot: the failure is in
    ``.errors`` (the caller applies ``failClosed``)."""
    timeout = kcfg.timeout.total_seconds() if hasattr(kcfg.timeout, "total_seconds") else float(kcfg.timeout)
    if getattr(kcfg, "snapshot", None):
        try:
            return load_snapshot(kcfg.snapshot)
        except KubeSnapshotError as e:
            return InUseScan(
                errors=[ContextError(f"snapshot:{Path(kcfg.snapshot).name}", str(e))],
                source=f"snapshot:{kcfg.snapshot}",
            )
    return read_in_use(kcfg.kubeconfig, list(kcfg.contexts or []) or None, request_timeout=timeout)
