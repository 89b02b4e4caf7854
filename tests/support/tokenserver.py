"""A docker bearer-token auth server compatible with distribution 2.8 ``auth.token``.

Tokens are RS256 JWTs signed with a fresh RSA key whose self-signed certificate is the
registry's ``rootcertbundle``. The JWT header carries the certificate in ``x5c`` (default) or
the libtrust key id in ``kid`` (``key_header="kid"``); distribution 2.8 accepts both.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["TokenAuthConfig", "TokenRequest", "TokenServer", "parse_scope", "libtrust_key_id"]


@dataclass(frozen=True)
class TokenAuthConfig:
    """What RegistryServer writes under ``auth.token``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: str


@dataclass
class TokenRequest:
    user: str | None  # None = anonymous
    scopes: list[str]
    service: str | None
    status: int
    granted: list[dict] = field(default_factory=list)
    method: str = "GET"
    token: str | None = None  # the issued token (None when refused), so tests can grep logs for it

    def __repr__(self) -> str:  # never print the token itself
        return (
            f"TokenRequest(user={self.user!r}, scopes={self.scopes!r}, service={self.service!r}, "
            f"status={self.status}, method={self.method!r})"
        )


def parse_scope(scope: str) -> dict | None:
    """``repository:team/app:pull,push`` -> {"type", "name", "actions"}; names may contain ':' (ports)."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    rtype, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return {"type": rtype, "name": name, "actions": [a for a in actions.split(",") if a]}


def libtrust_key_id(public_key) -> str:
    """libtrust key id: base32(sha256(DER SPKI)[:30]) in 12 colon-separated groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


AclFn = Callable[[str | None, str, str, list[str]], list[str]]


class TokenServer:
    """Threaded token endpoint on 127.0.0.1 (``GET /token`` and OAuth2 ``POST /token``).

    users: {username: password} accepted as basic auth; a wrong or missing password gives 401
    unless ``anonymous=True`` and no credentials were sent. ``acl(user, type, name, requested)``
    returns the granted actions (default: grant everything requested).
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike | None = None,
        *,
        users: dict[str, str] | None = None,
        anonymous: bool = False,
        service: str = "regkeeper-test-registry",
        issuer: str = "regkeeper-test-issuer",
        expires_in: int = 300,
        acl: AclFn | None = None,
        key_header: str = "x5c",
    ) -> None:
        if key_header not in ("x5c", "kid"):
            raise ValueError("key_header must be 'x5c' or 'kid'")
        self.dir = Path(tmpdir) if tmpdir else Path(tempfile.mkdtemp(prefix="tokenserver-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.anonymous = anonymous
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.acl = acl
        self.key_header = key_header
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regkeeper test token signer")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = self.dir / "token-signer.crt"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        self.key_id = libtrust_key_id(self._key.public_key())

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                if url.path != "/token":
                    return self._send(404, {"error": "not found"})
                q = parse_qs(url.query)
                scopes: list[str] = []
                for s in q.get("scope", []):
                    scopes.extend(s.split(" "))
                user, ok = server._check_basic(self.headers.get("Authorization"))
                self._answer(user, ok, scopes, (q.get("service") or [None])[0], "GET")

            def do_POST(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                if url.path != "/token":
                    return self._send(404, {"error": "not found"})
                form = parse_qs(body)
                scopes = []
                for s in form.get("scope", []):
                    scopes.extend(s.split(" "))
                service = (form.get("service") or [None])[0]
                if (form.get("grant_type") or [""])[0] == "password":
                    uname = (form.get("username") or [""])[0]
                    pw = (form.get("password") or [""])[0]
                    ok = server.users.get(uname) == pw and uname in server.users
                    user = uname
                else:
                    user, ok = server._check_basic(self.headers.get("Authorization"))
                self._answer(user, ok, scopes, service, "POST")

            def _answer(self, user, ok, scopes, service, method):
                if not ok:
                    server._record(TokenRequest(user, scopes, service, 401, method=method))
                    return self._send(
                        401,
                        {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                        {"WWW-Authenticate": 'Basic realm="regkeeper-test-token"'},
                    )
                token, granted, issued = server.issue(user, scopes)
                server._record(TokenRequest(user, scopes, service, 200, granted, method=method, token=token))
                self._send(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": server.expires_in,
                        "issued_at": issued,
                    },
                )

            def _send(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.realm = f"{self.url}/token"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="tokenserver", daemon=True
        )
        self._thread.start()

    # -- behaviour -------------------------------------------------------------------
    def _check_basic(self, header: str | None) -> tuple[str | None, bool]:
        if not header:
            return None, self.anonymous
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except Exception:
            return None, False
        return user, user in self.users and self.users[user] == password

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def issue(self, user: str | None, scopes: list[str]) -> tuple[str, list[dict], str]:
        access: list[dict] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if not parsed:
                continue
            actions = parsed["actions"]
            if self.acl is not None:
                actions = list(self.acl(user, parsed["type"], parsed["name"], actions))
            access.append({"type": parsed["type"], "name": parsed["name"], "actions": actions})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        headers = {"x5c": [self._x5c]} if self.key_header == "x5c" else {"kid": self.key_id}
        token = jwt.encode(claims, self._key_pem, algorithm="RS256", headers=headers)
        issued = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return token, access, issued

    def auth_config(self) -> TokenAuthConfig:
        return TokenAuthConfig(
            realm=self.realm, service=self.service, issuer=self.issuer, rootcertbundle=str(self.cert_file)
        )

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TokenServer(url={self.url!r}, service={self.service!r}, users={sorted(self.users)!r})"
