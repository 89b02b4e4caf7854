"""Why a list call failed, in words: one reason per failure, credentials scrubbed.

:func:`_describe` maps what the official client raises (``ApiException`` with a Kubernetes
``Status`` body, urllib3 connection, timeout, TLS and retry errors, undecodable JSON) to a
reason naming the resource, the ``GET`` path and the API server, an HTTP status when there is
one, and whether the failure is context-wide (unreachable server, TLS, rejected credentials:
said once per context, not once per resource).
"""

from urllib.parse import urlsplit

from ..util import scrub
from .fastjson import _loads
from .workloads import _Resource


class _ListFailed(Exception):
    """One list call failed; ``partial`` holds what a complete list with malformed objects did read."""

    def __init__(self, reason: str, status: int | None, context_wide: bool, partial=None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.context_wide = context_wide
        self.partial = partial


def _server_of(api_client) -> str:
    try:
        p = urlsplit(api_client.configuration.host)
        netloc = p.netloc.rsplit("@", 1)[-1]
        return f"{p.scheme}://{netloc}{p.path.rstrip('/')}"
    except Exception:  # noqa: BLE001
        return "<API server>"


def _describe(exc: BaseException, res: _Resource, server: str, timeout) -> tuple[str, int | None, bool]:
    """(reason, HTTP status, context-wide?) for an exception raised while listing ``res``."""
    import urllib3.exceptions as ue
    from kubernetes.client.exceptions import ApiException

    what = f"listing {res.display} (GET {res.path})"
    if isinstance(exc, ApiException):
        if exc.status:
            msg = ""
            body = exc.body
            if body:
                try:
                    doc = _loads(body)
                    if isinstance(doc, dict):
                        msg = str(doc.get("message") or "")
                except Exception:  # noqa: BLE001 - not a Status object
                    msg = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            msg = scrub(" ".join(msg.split()))[:300]
            if exc.status == 401:  # the credentials are rejected: true of every resource, say it once
                return (
                    f"HTTP 401 Unauthorized from API server {server}: the kubeconfig credentials were "
                    f"rejected (expired or wrong token/certificate)",
                    401,
                    True,
                )
            reason = f"HTTP {exc.status} {exc.reason or ''}".rstrip() + f" {what} from {server}"
            if msg:
                reason += f": {msg}"
            return reason, int(exc.status), False
        # status 0: the client wraps TLS failures this way
        return f"TLS error talking to {server}: {scrub(' '.join(str(exc.reason).split()))[:300]}", None, True
    inner = exc
    if isinstance(exc, ue.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    if isinstance(inner, ue.NewConnectionError):
        detail = str(inner).rsplit(":", 1)[-1].strip() or "connection failed"
        if "refused" in str(inner).lower():
            detail = "connection refused"
        return f"cannot connect to API server {server} ({detail})", None, True
    if isinstance(inner, ue.ConnectTimeoutError):
        return f"timed out connecting to API server {server} (connect timeout {timeout[0]}s)", None, True
    if isinstance(inner, ue.ReadTimeoutError):
        return f"read timed out after {timeout[1]}s {what} from {server}", None, False
    if isinstance(inner, ue.SSLError):
        return f"TLS error talking to {server}: {scrub(str(inner))[:300]}", None, True
    if isinstance(inner, (ue.ProtocolError, ConnectionError)):
        return f"connection dropped by API server {server} while {what}", None, False
    if isinstance(inner, ue.ResponseError):
        return f"gave up after retries {what} from {server}: {scrub(str(inner))[:200]}", None, False
    if isinstance(exc, ValueError):  # json / orjson decode errors, non-object responses
        return f"invalid response {what} from {server}: {scrub(str(exc))[:200]}", None, False
    return f"{type(exc).__name__} {what} from {server}: {scrub(str(exc))[:300]}", None, False
