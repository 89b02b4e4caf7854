"""Registry authentication: anonymous, HTTP basic, a static bearer token, and the bearer-token
flow (WWW-Authenticate realm/service/scope challenge; tokens cached per scope until shortly
before they expire; the request is re-sent once with the fresh credentials).

Secrets are resolved only when used (a callable) and never logged. The token service call itself
(retries, timeouts, error mapping) belongs to the transport, passed in as ``request_token``.
"""

import base64
import re
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

from ..errors import AuthError, RegistryError

# request_token(url, basic credentials or None, scopes) -> the token service's JSON object
TokenRequester = Callable[[str, "tuple[str, str] | None", list[str]], dict]


def parse_challenge(header: str) -> tuple[str, dict]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def scope_key(method: str, repo: str | None, path: str) -> str:
    """The token scope a call needs: catalog, or pull / pull,push / delete on a repository."""
    if repo is None:
        return "registry:catalog:*" if "_catalog" in path else ""
    if method == "DELETE":
        return f"repository:{repo}:delete"
    if method in ("PUT", "POST", "PATCH"):
        return f"repository:{repo}:pull,push"
    return f"repository:{repo}:pull"


class Token:
    __slots__ = ("value", "expires")

    def __init__(self, value: str, expires: float):
        self.value = value
        self.expires = expires


class RegistryAuth:
    """The credentials of one registry and the bearer tokens obtained with them. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: "str | Callable[[], str] | None" = None,
        credentials: Callable[[], tuple[str, str] | None] | None = None,
        request_token: TokenRequester | None = None,
    ):
        self.name = name
        self._username = username
        self._password = password
        self._credentials = credentials
        self._static_token = token
        self.request_token = request_token
        self._tokens: dict[str, Token] = {}
        self._scope_hint: dict[str, str] = {}
        self._lock = threading.Lock()
        self.mode: str | None = "basic" if (username or credentials) else None

    def __repr__(self) -> str:
        return f"RegistryAuth({self.name!r}, mode={self.mode!r})"

    def creds(self) -> tuple[str, str] | None:
        if self._credentials is not None:
            return self._credentials()
        if self._username is not None:
            return self._username, self._password or ""
        return None

    def bearer_static(self) -> str | None:
        """A configured static bearer token (a callable resolves the secret only when used)."""
        tok = self._static_token
        return tok() if callable(tok) else tok

    def _cached(self, scope: str) -> str | None:
        with self._lock:
            t = self._tokens.get(scope)
            if t and t.expires > time.monotonic():
                return t.value
        return None

    def headers(self, key: str) -> dict:
        """The Authorization header for a call needing scope ``key`` (empty when none applies)."""
        static = self.bearer_static()
        if static:
            return {"Authorization": f"Bearer {static}"}
        if self.mode == "bearer":
            tok = self._cached(self._scope_hint.get(key, key))
            return {"Authorization": f"Bearer {tok}"} if tok else {}
        if self.mode == "basic":
            creds = self.creds()
            if creds:
                raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
                return {"Authorization": f"Basic {raw}"}
        return {}

    def answer(self, challenge: str, key: str, extra_scopes: list[str]) -> bool:
        """Answer a 401's WWW-Authenticate ``challenge``. True when re-sending the request with
        the new credentials makes sense (a fresh token, or basic credentials not yet sent)."""
        scheme, params = parse_challenge(challenge)
        if scheme == "bearer" and not self.bearer_static():
            scope = params.get("scope", key)
            scopes = [scope] + [s for s in extra_scopes if s and s != scope]
            tok = self._fetch(params, scopes)
            with self._lock:
                self.mode = "bearer"
                self._tokens[scope] = tok
                self._tokens[key] = tok
                self._scope_hint[key] = scope
            return True
        if scheme == "basic" and self.mode != "basic" and self.creds():
            self.mode = "basic"
            return True
        return False

    def _fetch(self, params: dict, scopes: list[str]) -> Token:
        realm = params.get("realm")
        if not realm:
            raise AuthError("bearer challenge without realm", registry=self.name)
        q = [("service", params["service"])] if params.get("service") else []
        q += [("scope", s) for s in scopes if s]
        url = realm + ("&" if "?" in realm else "?") + urlencode(q)
        if self.request_token is None:  # set by the transport that owns this auth
            raise RegistryError("bearer challenge, but no token requester is set", registry=self.name)
        body = self.request_token(url, self.creds(), scopes)
        value = body.get("token") or body.get("access_token")
        if not value or not isinstance(value, str):
            raise RegistryError("token service returned no token", registry=self.name)
        try:
            ttl = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            ttl = 60.0
        return Token(value, time.monotonic() + max(ttl - 10, ttl / 2))
