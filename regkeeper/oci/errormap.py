"""Error mapping: every failed registry call becomes a RegistryError (or subclass) that names the
registry, the call (method + path, never the query), the repository, the HTTP status, whether
the failure was transient and, when retries ran out, how many attempts were made.

No bare library exception (JSONDecodeError, ChunkedEncodingError, ConnectionError...) leaves
the client: the transport maps it here, after the retry loop gave up or found it permanent.
"""

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from ..errors import (
    AuthError,
    DeletesDisabledError,
    NotFoundError,
    ReadOnlyError,
    RegistryError,
)
from ..retry import exception_text, is_transient, parse_retry_after
from ..util import scrub


@dataclass(frozen=True, slots=True)
class Call:
    """One registry API call, as errors and retry logs name it."""

    registry: str
    target: str  # "127.0.0.1:5000" or "token service auth.example.com"
    method: str
    url: str
    repo: str | None = None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path  # the query may hold upload state: never shown

    def describe(self) -> str:
        return f"registry {self.registry!r}: {self.method} {self.path}"

    def fill(self, err: RegistryError) -> RegistryError:
        """Name the call on an error raised without that context (e.g. by a body reader)."""
        if err.registry is None:
            err.registry = self.registry
        if err.repository is None:
            err.repository = self.repo
        if err.method is None and err.path is None:
            err.method, err.path = self.method, self.path
        if err.url is None:
            err.url = self.url
        return err


def short(e: BaseException) -> str:
    """An exception in one line (regkeeper.retry.exception_text), credentials scrubbed."""
    return scrub(exception_text(e))[:300]


def parse_json(raw: bytes):
    """Decode a 2xx JSON body. Garbage (bytes that are not UTF-8 included) raises
    JSONDecodeError, which the retry decision takes for a body cut in transit."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise json.JSONDecodeError(f"not UTF-8 ({e.reason})", "", e.start) from None


def json_object(raw: bytes) -> dict:
    """A 2xx JSON body that must be an object. Garbage raises JSONDecodeError (transient: the
    body was cut); valid JSON of another shape is a permanent RegistryError."""
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise RegistryError(f"unexpected response: a JSON {type(doc).__name__}, expected an object")
    return doc


def _error_detail(resp: requests.Response) -> str:
    """The registry's ``errors`` list (code: message), or a short plain-text body."""
    try:
        raw = resp.content or b""
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        return ""  # the status says enough; the body broke
    finally:
        resp.close()
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw[:200].decode("utf-8", "replace").strip()
        return scrub(text.splitlines()[0]) if text and "<" not in text else ""
    errs = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errs, list):
        return ""
    return scrub(
        "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
            for e in errs[:3]
            if isinstance(e, dict)
        )
    )


def error_for_response(resp: requests.Response, call: Call) -> RegistryError:
    """The error for an HTTP status the call did not accept (reads and closes the body)."""
    return error_for_status(
        call,
        resp.status_code,
        detail=_error_detail(resp) or None,
        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
    )


def error_for_status(
    call: Call, status: int, *, detail: str | None = None, retry_after: float | None = None
) -> RegistryError:
    """The error for ``status``: 401/403 AuthError, 404 NotFoundError, 405 DeletesDisabledError
    (DELETE) or ReadOnlyError, else RegistryError; ``transient`` per the retry decision."""
    kw: dict[str, Any] = dict(
        registry=call.registry,
        repository=call.repo,
        status=status,
        url=call.url,
        method=call.method,
        path=call.path,
        detail=detail,
        transient=is_transient(status=status),
        retry_after=retry_after,
    )
    if status == 401:
        return AuthError("credentials rejected", **kw)
    if status == 403:
        return AuthError("access denied", **kw)
    if status == 404:
        return NotFoundError("not found", **kw)
    if status == 405 and call.method == "DELETE":
        return DeletesDisabledError(
            "deletes are disabled on this registry (storage.delete.enabled: "
            "false); nothing more will be deleted",
            **kw,
        )
    if status == 405:
        return ReadOnlyError("the registry refuses writes (read-only mode?)", **kw)
    return RegistryError("failed", **kw)


def error_for_exception(e: BaseException, call: Call) -> RegistryError:
    """The error for a library exception the retry loop gave up on (or found permanent)."""
    kw: dict[str, Any] = dict(
        registry=call.registry,
        repository=call.repo,
        url=call.url,
        method=call.method,
        path=call.path,
        attempts=getattr(e, "attempts", None),
        transient=is_transient(e),
    )
    if isinstance(e, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        return RegistryError(
            f"TLS verification failed for {call.target} ({short(e)}); set tls.caFile "
            "to the registry's CA certificate",
            **kw,
        )
    if isinstance(e, json.JSONDecodeError):
        return RegistryError(
            "response is not valid JSON", detail=f"{e.msg}: line {e.lineno} column {e.colno}", **kw
        )
    if isinstance(
        e,
        (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ),
    ):
        return RegistryError("connection broke while reading the response", detail=short(e), **kw)
    if isinstance(
        e, (requests.exceptions.ConnectionError, urllib3.exceptions.NewConnectionError, ConnectionError)
    ):
        return RegistryError(f"cannot connect to {call.target}", detail=short(e), **kw)
    if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return RegistryError(f"timed out talking to {call.target}", detail=short(e), **kw)
    return RegistryError(f"request failed ({type(e).__name__})", detail=short(e), **kw)
