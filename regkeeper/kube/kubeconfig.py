"""Which clusters to read: kubeconfig lookup, contexts, the in-cluster service account.

Where no kubeconfig is given the usual order applies: ``KUBECONFIG`` (several files, merged,
missing entries skipped), then ``~/.kube/config``, then the in-cluster service account (context
``in-cluster``). Each wanted context becomes a :class:`_Target`: a client factory, or the
reason it cannot be read (unknown context, no current-context, unreadable kubeconfig). Clients
retry nothing themselves (:func:`_make_configuration_factory`: urllib3 retries off); each list
call is retried by ``api.py`` through THE retry decision (regkeeper.retry). Credentials never
appear in a reason.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..util import scrub

IN_CLUSTER = "in-cluster"


@dataclass
class _Target:
    context: str
    make_client: Callable[[], object] | None  # returns kubernetes.client.ApiClient
    error: str | None = None


def _kubeconfig_paths(kubeconfig: str | None) -> tuple[list[str] | None, str]:
    """(existing kubeconfig files or None for in-cluster, description); raises ValueError when none."""
    if kubeconfig:
        paths = [os.path.expanduser(p) for p in str(kubeconfig).split(os.pathsep) if p]
        existing = [p for p in paths if os.path.isfile(p)]
        if not existing:
            raise ValueError(f"kubeconfig file not found: {kubeconfig} (kubernetes.kubeconfig)")
        return existing, "kubernetes.kubeconfig"
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [os.path.expanduser(p) for p in env.split(os.pathsep) if p]
        existing = [p for p in paths if os.path.isfile(p)]
        if not existing:
            raise ValueError(f"KUBECONFIG names no existing file ({env})")
        return existing, "KUBECONFIG"
    home = os.path.expanduser("~/.kube/config")
    if os.path.isfile(home):
        return [home], "~/.kube/config"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None, "in-cluster service account"
    raise ValueError(
        "no kubeconfig: kubernetes.kubeconfig is not set, KUBECONFIG is not set, "
        "~/.kube/config does not exist, and this is not a pod (KUBERNETES_SERVICE_HOST unset)"
    )


def _kubeconfig_contexts(paths: list[str]) -> tuple[list[str], str | None]:
    """Context names and current-context across (merged) kubeconfig files; first file wins."""
    import yaml

    names: list[str] = []
    current = None
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(
                f"cannot read kubeconfig {p}: {type(e).__name__}: {scrub(str(e))[:300]}"
            ) from None
        if not isinstance(doc, dict):
            raise ValueError(f"kubeconfig {p} is not a mapping")
        for c in doc.get("contexts") or []:
            if isinstance(c, dict) and c.get("name") and c["name"] not in names:
                names.append(str(c["name"]))
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
    return names, current


def _resolve_targets(kubeconfig, contexts, make_configuration) -> list[_Target]:
    wanted = list(dict.fromkeys(c for c in (contexts or []) if c))  # de-duplicated, in order
    try:
        paths, how = _kubeconfig_paths(kubeconfig)
    except ValueError as e:
        return [_Target(c, None, str(e)) for c in (wanted or ["(current-context)"])]

    if paths is None:  # in-cluster

        def make_incluster():
            from kubernetes import client as kclient
            from kubernetes import config as kconfig

            cfg = make_configuration()
            kconfig.load_incluster_config(client_configuration=cfg)
            return kclient.ApiClient(configuration=cfg)

        if wanted and wanted != [IN_CLUSTER]:
            why = (
                f"no kubeconfig to find context in (running in-cluster with the service account; "
                f"only context {IN_CLUSTER!r} is available)"
            )
            return [_Target(c, None, why) for c in wanted]
        return [_Target(IN_CLUSTER, make_incluster)]

    joined = os.pathsep.join(paths)
    try:
        names, current = _kubeconfig_contexts(paths)
    except ValueError as e:
        return [_Target(c, None, str(e)) for c in (wanted or ["(current-context)"])]
    if not wanted:
        if not current:
            return [
                _Target(
                    "(current-context)",
                    None,
                    f"kubeconfig {joined} has no current-context; set kubernetes.contexts",
                )
            ]
        wanted = [current]

    def maker(ctx):
        def make():
            from kubernetes import config as kconfig

            return kconfig.new_client_from_config(
                config_file=joined,
                context=ctx,
                persist_config=False,
                client_configuration=make_configuration(),
            )

        return make

    out = []
    for c in wanted:
        if c not in names:
            avail = ", ".join(names) or "none"
            out.append(
                _Target(
                    c,
                    None,
                    f"context {c!r} not found in kubeconfig {joined} (from {how}; contexts there: {avail})",
                )
            )
        else:
            out.append(_Target(c, maker(c)))
    return out


def _make_configuration_factory():
    """Configurations whose urllib3 pool retries nothing (``retries = False``: the first error
    is raised as it is); the caller retries whole list calls, body read included."""

    def make():
        from kubernetes import client as kclient

        cfg = type.__call__(kclient.Configuration)
        cfg.retries = False
        cfg.debug = False
        return cfg

    return make
