"""Reading live clusters: every context, every workload kind, page by page.

:func:`read_in_use` reads every configured kubeconfig context with the official ``kubernetes``
client (Pods with all container kinds and their status ``imageID``s, and the pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs), all namespaces,
paginated (``limit``/``continue``; an expired continue token restarts the list once), every
call bounded by a timeout, the (context, resource) lists in a small thread pool. Each page
request, its body read and its parse run through THE retry decision (``run_with_retries``):
429/502/503/504, connection errors, resets and cuts while reading the body are retried with
backoff and logged; 401/403/404/410/500 are not (the client's own urllib3 retries are off). A context that
cannot be read is recorded in :attr:`InUseScan.errors` with its name and the reason; the others
are still read. A list holding an object of the wrong shape fails its context too, naming the
object and the field. A resource's references count only when its whole list was read (or, for
a list with malformed objects, those of the objects that could be read).

Credentials from the kubeconfig are never logged, stored in a scan, or put in an error.
"""

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from ..retry import RetryPolicy, run_with_retries
from ..util import scrub
from .api_errors import _describe, _ListFailed, _server_of
from .collect import _Collector
from .fastjson import _gc_paused, _loads
from .inuse import ContextError, InUseScan
from .kubeconfig import _make_configuration_factory, _resolve_targets
from .workloads import RESOURCES, _Resource, json_type

log = logging.getLogger("regkeeper.kube")


class _Pager:
    """The pages of one list call, each fetched and parsed (retried as one), read into the
    collector and freed with the GC paused."""

    def __init__(
        self, api_client, res: _Resource, page_size: int, timeout, policy: RetryPolicy, context: str = ""
    ):
        from kubernetes import client as kclient

        self.method = getattr(getattr(kclient, res.api)(api_client), res.method)
        self.server = _server_of(api_client)
        self.res = res
        self.page_size = page_size
        self.timeout = timeout
        self.policy = policy
        self.describe = f"kubernetes context {context!r}: GET {res.path} ({self.server})"
        self.cont: str | None = None  # the continue token of the request in flight

    def read_all(self, col: _Collector) -> None:
        self.cont = None
        seen_tokens: set[str] = set()
        while True:
            self.cont = self._read_page(col)
            if not self.cont:
                return
            if self.cont in seen_tokens:
                raise _ListFailed(
                    f"API server repeated a continue token listing {self.res.display} "
                    f"(GET {self.res.path}) from {self.server}",
                    None,
                    False,
                )
            seen_tokens.add(self.cont)

    def _fetch(self, kwargs: dict) -> dict:
        """One attempt: send the request, read the whole body, parse it."""
        resp = self.method(**kwargs)
        try:
            body = resp.data
        finally:
            resp.release_conn()
        doc = _loads(body)
        del body
        if not isinstance(doc, dict):
            raise ValueError(f"JSON response is a {type(doc).__name__}, not a {self.res.kind}List")
        return doc

    def _read_page(self, col: _Collector) -> str | None:
        """Fetch, parse and collect one page; the next continue token, or None after the last page."""
        kwargs = {"_preload_content": False, "_request_timeout": self.timeout}
        if self.page_size:
            kwargs["limit"] = self.page_size
        if self.cont:
            kwargs["_continue"] = self.cont
        with _gc_paused():  # parse, extract, and free the page before the GC sees it
            doc = run_with_retries(lambda: self._fetch(kwargs), self.policy, self.describe, logger=log)
            items = doc.get("items") or ()
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"items is {json_type(items)}, expected a list")
            for item in items:
                col.add_object(self.res.kind, item, col.count)
            cont = (doc.get("metadata") or {}).get("continue") or None
            del doc
        return cont


def _list_resource(
    api_client, res: _Resource, context: str, *, page_size: int, timeout, policy: RetryPolicy
) -> _Collector:
    """List one resource across all namespaces, page by page, into a collector."""
    from kubernetes.client.exceptions import ApiException

    pager = _Pager(api_client, res, page_size, timeout, policy, context)
    restarted = False
    while True:
        col = _Collector(context)
        try:
            pager.read_all(col)
            if col.malformed:  # an object we cannot read: we cannot know what it uses
                raise _ListFailed(col.malformed_reason(), None, False, partial=col)
            return col
        except ApiException as e:
            if e.status == 410 and pager.cont and not restarted:
                # continue token expired mid-list: start this list again once, from scratch
                log.info(
                    "context %r: continue token for %s expired; restarting the list", context, res.display
                )
                restarted = True
                continue
            raise _ListFailed(*_describe(e, res, pager.server, timeout)) from None
        except _ListFailed:
            raise
        except Exception as e:  # noqa: BLE001 - urllib3 errors, JSON errors
            raise _ListFailed(*_describe(e, res, pager.server, timeout)) from None


def read_in_use(
    kubeconfig: str | None = None,
    contexts: list[str] | None = None,
    *,
    request_timeout: float | tuple[float, float] = 30,
    page_size: int = 500,
    retries: int = 3,
    backoff: float = 0.5,
    max_workers: int = 4,
) -> InUseScan:
    """Read every image reference from the given kubeconfig contexts (all namespaces).

    ``kubeconfig`` None: ``KUBECONFIG``, then ``~/.kube/config``, then the in-cluster service
    account. ``contexts`` None or empty: the kubeconfig's current context. Every list call is
    paginated (``limit``/``continue``) and bounded by ``request_timeout`` (seconds, or
    ``(connect, read)``); transient failures (regkeeper.retry: 429/502/503/504, connection
    errors, a body cut or reset while read) are retried ``retries`` times with backoff. A
    context that fails is recorded in ``.errors`` and does not stop the others.
    """
    t0 = time.monotonic()
    timeout = _timeouts(request_timeout)
    scan = InUseScan(source="kubernetes")
    targets = _resolve_targets(kubeconfig, contexts, _make_configuration_factory())
    ctx_errors: dict[str, list[ContextError]] = defaultdict(list)
    clients = _open_clients(targets, ctx_errors)
    policy = RetryPolicy.from_retries(retries, backoff)
    try:
        results = _list_everything(
            clients, page_size=page_size, timeout=timeout, policy=policy, max_workers=max_workers
        )
    finally:
        for c in clients.values():
            _close_client(c)
    for t in targets:
        _merge_context(scan, t.context, clients, results, ctx_errors)
    scan.duration_seconds = time.monotonic() - t0
    log.info("kubernetes in-use scan: %s", scan.summary())
    return scan


def _timeouts(request_timeout: float | tuple[float, float]) -> tuple[float, float]:
    """(connect, read) seconds; a single number bounds the read and caps the connect at 10 s."""
    if isinstance(request_timeout, tuple):
        return (float(request_timeout[0]), float(request_timeout[1]))
    return (min(10.0, float(request_timeout)), float(request_timeout))


def _open_clients(targets, ctx_errors: dict[str, list[ContextError]]) -> dict[str, object]:
    """An API client per readable target; the others' reasons go to ``ctx_errors``."""
    clients: dict[str, object] = {}
    for t in targets:
        if t.error:
            ctx_errors[t.context].append(ContextError(t.context, t.error))
            continue
        try:
            clients[t.context] = t.make_client()
        except Exception as e:  # noqa: BLE001 - kubeconfig problems: bad user, missing cert file, exec plugin
            msg = scrub(" ".join(str(e).split()))[:300]
            ctx_errors[t.context].append(
                ContextError(t.context, f"cannot load kubeconfig context: {type(e).__name__}: {msg}")
            )
    return clients


def _list_everything(
    clients: dict[str, object], *, page_size: int, timeout, policy: RetryPolicy, max_workers: int
) -> dict[tuple[str, str], "_Collector | _ListFailed"]:
    """Every (context, resource) list, in a bounded thread pool: a collector or the failure."""
    jobs = [(ctx, res) for ctx in clients for res in RESOURCES]
    results: dict[tuple[str, str], _Collector | _ListFailed] = {}

    def run(job):
        ctx, res = job
        try:
            return _list_resource(clients[ctx], res, ctx, page_size=page_size, timeout=timeout, policy=policy)
        except _ListFailed as e:
            return e

    if jobs:
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(jobs))), thread_name_prefix="rk-kube"
        ) as ex:
            for job, out in zip(jobs, ex.map(run, jobs), strict=True):
                results[(job[0], job[1].plural)] = out
    return results


def _merge_context(
    scan: InUseScan, ctx: str, clients: dict[str, object], results, ctx_errors: dict[str, list[ContextError]]
) -> None:
    """Add one context's lists to the scan: its references, counts and errors; read only if none failed."""
    if ctx in clients:
        _merge_lists(scan, ctx, results, ctx_errors[ctx])
    if ctx_errors.get(ctx):
        for e in ctx_errors[ctx]:
            log.warning("kubernetes context %r could not be read: %s", ctx, e.reason)
        scan.errors.extend(ctx_errors[ctx])
    elif ctx in clients:
        scan.contexts_read.append(ctx)
        log.info(
            "kubernetes context %r: %s", ctx, ", ".join(f"{n} {r}" for r, n in scan.objects[ctx].items())
        )


def _merge_lists(scan: InUseScan, ctx: str, results, errors: list[ContextError]) -> None:
    counts: dict[str, int] = {}
    seen_conn: set[str] = set()
    for res in RESOURCES:
        out = results[(ctx, res.plural)]
        if isinstance(out, _ListFailed):
            if out.context_wide:  # unreachable server, TLS, rejected credentials
                if out.reason in seen_conn:
                    continue  # the same unreachable server for every resource: say it once
                seen_conn.add(out.reason)
                errors.append(ContextError(ctx, out.reason, None, out.status))
            else:
                errors.append(ContextError(ctx, out.reason, res.display, out.status))
                _add_refs(scan, out)
            continue
        counts[res.plural] = out.count
        _add_refs(scan, out)
    scan.objects[ctx] = counts


def _add_refs(scan: InUseScan, out: "_Collector | _ListFailed") -> None:
    """A complete list's references; of a failed one, those of the objects it could read (a list
    with malformed objects: more protection, never less)."""
    col = out.partial if isinstance(out, _ListFailed) else out
    if col is not None:
        scan.refs.extend(col.refs)
        scan.invalid.extend(col.invalid)


def _close_client(api_client) -> None:
    try:
        api_client.close()
    except Exception:  # noqa: BLE001
        pass
    try:
        api_client.rest_client.pool_manager.clear()
    except Exception:  # noqa: BLE001
        pass
