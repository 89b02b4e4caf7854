"""A recorded Kubernetes API server on 127.0.0.1, for the official ``kubernetes`` client.

No cluster runs in the test environment. :class:`KubeApiServer` serves recorded list responses
(``PodList``, ``DeploymentList``...) over real HTTP(S) on loopback the way kube-apiserver does:
bearer-token auth, ``limit``/``continue`` pagination with ``metadata.continue`` tokens and
``remainingItemCount``, ``Status`` objects for errors, discovery endpoints. Switches make a
resource answer 403/500/503/410, drop the connection, stall, or reset the connection in the
middle of a 200 body (``cut``). Point the client at it with a
kubeconfig from :func:`write_kubeconfig`.

    with KubeApiServer(FIXTURES, substitutions={"{{REGISTRY}}": "127.0.0.1:5000"}) as api:
        write_kubeconfig(tmp / "kubeconfig", {"prod": api})
        api.fail("deployments", 403)
        ...
        api.requests   # [{"method", "path", "resource", "query", "authorized", "status"}, ...]

The bearer token (:data:`FAKE_TOKEN`) is fake and random per test session; tests assert it never
appears in logs, reports or errors.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import ipaddress
import json
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "KubeApiServer",
    "write_kubeconfig",
    "load_responses",
    "synthetic_pods",
    "FAKE_TOKEN",
    "FIXTURES",
    "RESOURCES",
]

FAKE_TOKEN = "rk-fake-kube-token-" + secrets.token_hex(16)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube"

# resource plural -> (collection path, list kind, apiVersion)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "pods": ("/api/v1/pods", "PodList", "v1"),
    "deployments": ("/apis/apps/v1/deployments", "DeploymentList", "apps/v1"),
    "statefulsets": ("/apis/apps/v1/statefulsets", "StatefulSetList", "apps/v1"),
    "daemonsets": ("/apis/apps/v1/daemonsets", "DaemonSetList", "apps/v1"),
    "replicasets": ("/apis/apps/v1/replicasets", "ReplicaSetList", "apps/v1"),
    "jobs": ("/apis/batch/v1/jobs", "JobList", "batch/v1"),
    "cronjobs": ("/apis/batch/v1/cronjobs", "CronJobList", "batch/v1"),
}
_LIST_KIND_TO_RESOURCE = {v[1]: k for k, v in RESOURCES.items()}
_KIND_TO_RESOURCE = {v[1][:-4]: k for k, v in RESOURCES.items()}
_GROUP = {
    "pods": "",
    "deployments": "apps",
    "statefulsets": "apps",
    "daemonsets": "apps",
    "replicasets": "apps",
    "jobs": "batch",
    "cronjobs": "batch",
}
_PATH_RE = re.compile(
    r"^/(?:api/v1|apis/(?:apps|batch)/v1)(?:/namespaces/(?P<ns>[a-z0-9-]+))?/(?P<res>[a-z]+)$"
)

_STATUS_REASON = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _status(code: int, message: str, reason: str | None = None, kind: str | None = None) -> dict:
    doc = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _STATUS_REASON.get(code, "Unknown"),
        "code": code,
    }
    if kind:
        doc["details"] = {"kind": kind}
    return doc


def _default_message(resource: str, code: int) -> str:
    group = _GROUP.get(resource, "")
    full = f"{resource}.{group}" if group else resource
    if code == 403:
        return (
            f'{full} is forbidden: User "system:serviceaccount:regkeeper:regkeeper" cannot list resource '
            f'"{resource}" in API group "{group}" at the cluster scope'
        )
    if code == 500:
        return "Internal error occurred: etcdserver: request timed out"
    if code == 503:
        return "the server is currently unable to handle the request"
    if code == 429:
        return "storage is (re)initializing"
    if code == 410:
        return (
            "The provided continue parameter is too old to display a consistent list result. You can start a "
            "new list without the continue parameter, or use the continue token in this response to retrieve "
            "the remainder of the results. Continuing with the provided token results in an inconsistent list "
            "- objects that were created, modified, or deleted between the time the first chunk was returned "
            "and now may show up in the list."
        )
    return f"the server could not list {full}"


def load_responses(
    source: str | Path | Mapping[str, Any] | None, substitutions: Mapping[str, str] | None = None
) -> dict[str, dict]:
    """Recorded list responses keyed by resource plural.

    ``source``: a directory of ``*.json`` list responses (the resource comes from the document's
    ``kind``, e.g. ``PodList``), or a mapping ``{"pods": PodList | [items], ...}``.
    ``substitutions`` are applied to the raw text (``{"{{REGISTRY}}": "127.0.0.1:5000"}``).
    """
    out: dict[str, dict] = {}
    if source is None:
        return out
    if isinstance(source, (str, Path)):
        d = Path(source)
        for f in sorted(d.glob("*.json")):
            text = f.read_text(encoding="utf-8")
            for k, v in (substitutions or {}).items():
                text = text.replace(k, v)
            doc = json.loads(text)
            res = _LIST_KIND_TO_RESOURCE.get(doc.get("kind", "")) or (f.stem if f.stem in RESOURCES else None)
            if res is None:
                continue
            out[res] = doc
        return out
    for res, val in source.items():
        if res not in RESOURCES:
            raise ValueError(f"unknown resource {res!r}; known: {', '.join(RESOURCES)}")
        if isinstance(val, list):
            path, kind, api_version = RESOURCES[res]
            val = {
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": "1"},
                "items": val,
            }
        if substitutions:
            text = json.dumps(val)
            for k, v in substitutions.items():
                text = text.replace(k, v)
            val = json.loads(text)
        out[res] = val
    return out


class _Fault:
    __slots__ = ("status", "message", "drop", "delay", "times", "on_continue_only", "cut")

    def __init__(
        self, status=None, message=None, drop=False, delay=0.0, times=None, on_continue_only=False, cut=None
    ):
        self.status = status
        self.message = message
        self.drop = drop
        self.delay = delay
        self.times = times
        self.on_continue_only = on_continue_only
        self.cut = cut  # fraction of a 200 body sent before the connection is reset


class KubeApiServer:
    """Threaded HTTP(S) server on 127.0.0.1 serving recorded Kubernetes list responses."""

    def __init__(
        self,
        responses: str | Path | Mapping[str, Any] | None = None,
        *,
        substitutions: Mapping[str, str] | None = None,
        token: str | None = FAKE_TOKEN,
        tls: bool = False,
        git_version: str = "v1.30.2",
    ):
        self.token = token
        self.tls = tls
        self.git_version = git_version
        self.requests: list[dict] = []
        self.ca_pem: bytes | None = None
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}
        self._lists: dict[str, dict] = {}
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: str | None = None
        self._port: int | None = None
        for res, doc in load_responses(responses, substitutions).items():
            self.set_response(res, doc)
        self.start()

    # -- content ---------------------------------------------------------------------------------
    def set_response(self, resource: str, doc: Mapping | list) -> None:
        """Serve ``doc`` (a list response, or a list of items) for ``resource``."""
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r}")
        path, kind, api_version = RESOURCES[resource]
        if isinstance(doc, list):
            doc = {
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": "1"},
                "items": doc,
            }
        items = list(doc.get("items") or [])
        encoded = [json.dumps(i, separators=(",", ":")).encode() for i in items]
        entry = {
            "kind": doc.get("kind") or kind,
            "apiVersion": doc.get("apiVersion") or api_version,
            "resourceVersion": str((doc.get("metadata") or {}).get("resourceVersion") or "1"),
            "items": items,
            "encoded": encoded,
        }
        with self._lock:
            self._lists[resource] = entry

    def items(self, resource: str) -> list[dict]:
        with self._lock:
            return list(self._lists.get(resource, {}).get("items", []))

    # -- fault switches --------------------------------------------------------------------------
    def fail(
        self,
        resource: str,
        status: int,
        message: str | None = None,
        *,
        times: int | None = None,
        on_continue_only: bool = False,
    ) -> None:
        """Make ``resource`` answer ``status`` with a Status body (``times`` None: until cleared)."""
        self._set_fault(
            resource, _Fault(status=status, message=message, times=times, on_continue_only=on_continue_only)
        )

    def drop(self, resource: str, *, times: int | None = None) -> None:
        """Close the connection without answering requests for ``resource``."""
        self._set_fault(resource, _Fault(drop=True, times=times))

    def stall(self, resource: str, seconds: float, *, times: int | None = None) -> None:
        """Wait ``seconds`` before answering ``resource`` (to trip the client's read timeout)."""
        self._set_fault(resource, _Fault(delay=seconds, times=times))

    def cut(self, resource: str, *, part: float = 0.5, times: int | None = None) -> None:
        """Answer 200 with the full Content-Length, send ``part`` of the body, then reset the
        connection (TCP RST): a reset while the client reads the body."""
        if not 0 <= part < 1:
            raise ValueError("part is the fraction of the body sent: 0 <= part < 1")
        self._set_fault(resource, _Fault(cut=part, times=times))

    def expire_continue(self, resource: str, *, times: int = 1) -> None:
        """Answer 410 Expired to the next ``times`` requests for ``resource`` that carry a continue token."""
        self.fail(resource, 410, times=times, on_continue_only=True)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _set_fault(self, resource: str, fault: _Fault) -> None:
        if resource not in RESOURCES and resource != "*":
            raise ValueError(f"unknown resource {resource!r}")
        with self._lock:
            self._faults[resource] = fault

    def _take_fault(self, resource: str, has_continue: bool) -> _Fault | None:
        with self._lock:
            for key in (resource, "*"):
                f = self._faults.get(key)
                if f is None:
                    continue
                if f.on_continue_only and not has_continue:
                    continue
                if f.times is not None:
                    f.times -= 1
                    if f.times <= 0:
                        del self._faults[key]
                return f
        return None

    # -- inspection ------------------------------------------------------------------------------
    def requests_for(self, resource: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["resource"] == resource]

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("KubeApiServer was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> KubeApiServer:
        if self._httpd is not None:
            return self
        server = self
        handler = type("Handler", (_Handler,), {"api": server})
        httpd = _Server(("127.0.0.1", 0), handler)
        if self.tls:
            self._tmp = tempfile.mkdtemp(prefix="kubeapi-tls-")
            cert, key, self.ca_pem = _make_tls(Path(self._tmp))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kubeapi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release stalled handlers, shut down, close the socket, join the thread."""
        self._stop.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> KubeApiServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:  # never the token
        state = self.url if self._httpd is not None else "stopped"
        return f"KubeApiServer({state}, resources={sorted(self._lists)})"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # dropped/aborted connections are expected
        pass


class _Handler(BaseHTTPRequestHandler):
    api: KubeApiServer
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-recorded"

    def log_message(self, format, *args):  # no stderr noise (and never headers)
        pass

    def do_GET(self):  # noqa: N802
        api = self.api
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.rstrip("/") or "/"
        m = _PATH_RE.match(path)
        resource = m.group("res") if m and m.group("res") in RESOURCES else None
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        authorized = api.token is None or (scheme.lower() == "bearer" and credential.strip() == api.token)
        entry = {
            "method": "GET",
            "path": path,
            "resource": resource,
            "query": query,
            "authorized": authorized,
            "status": None,
        }
        api._record(entry)

        if not authorized:
            return self._json(401, _status(401, "Unauthorized"), entry)
        if path == "/version":
            major, minor = self.api.git_version.lstrip("v").split(".")[:2]
            return self._json(
                200,
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": api.git_version,
                    "gitCommit": "0" * 40,
                    "gitTreeState": "clean",
                    "buildDate": "2024-06-11T20:20:00Z",
                    "goVersion": "go1.22.4",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
                entry,
            )
        if path == "/api":
            return self._json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{api.port}"}
                    ],
                },
                entry,
            )
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                }
                for g in ("apps", "batch")
            ]
            return self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}, entry)
        if resource is None or not path.startswith(RESOURCES[resource][0].rsplit("/", 1)[0] + "/"):
            return self._json(404, _status(404, "the server could not find the requested resource"), entry)

        fault = api._take_fault(resource, bool(query.get("continue")))
        if fault is not None:
            if fault.delay:
                api._stop.wait(fault.delay)
            if fault.drop:
                entry["status"] = "dropped"
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.status:
                return self._json(
                    fault.status,
                    _status(
                        fault.status, fault.message or _default_message(resource, fault.status), kind=resource
                    ),
                    entry,
                )

        with api._lock:
            lst = api._lists.get(resource)
        if lst is None:
            path0, kind, api_version = RESOURCES[resource]
            lst = {
                "kind": kind,
                "apiVersion": api_version,
                "resourceVersion": "1",
                "items": [],
                "encoded": [],
            }
        encoded = lst["encoded"]
        if m.group("ns"):
            ns = m.group("ns")
            encoded = [
                e
                for e, i in zip(lst["encoded"], lst["items"], strict=True)
                if (i.get("metadata") or {}).get("namespace") == ns
            ]

        start = 0
        token = query.get("continue")
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
                start = int(tok["start"])
                if tok.get("rv") != lst["resourceVersion"] or not 0 <= start <= len(encoded):
                    raise ValueError("stale")
            except Exception:  # noqa: BLE001
                return self._json(400, _status(400, "continue key is not valid: illegal base64 data"), entry)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            return self._json(400, _status(400, f"invalid limit {query.get('limit')!r}"), entry)
        end = len(encoded) if limit <= 0 else min(len(encoded), start + limit)
        meta: dict = {"resourceVersion": lst["resourceVersion"]}
        if end < len(encoded):
            meta["continue"] = (
                base64.urlsafe_b64encode(
                    json.dumps({"v": "meta.k8s.io/v1", "rv": lst["resourceVersion"], "start": end}).encode()
                )
                .decode()
                .rstrip("=")
            )
            meta["remainingItemCount"] = len(encoded) - end
        body = b"".join(
            [
                b'{"kind":',
                json.dumps(lst["kind"]).encode(),
                b',"apiVersion":',
                json.dumps(lst["apiVersion"]).encode(),
                b',"metadata":',
                json.dumps(meta).encode(),
                b',"items":[',
                b",".join(encoded[start:end]),
                b"]}",
            ]
        )
        entry["page"] = (start, end)
        if fault is not None and fault.cut is not None:
            return self._send_cut(body, fault.cut, entry)
        return self._send(200, body, entry)

    def _send_cut(self, body: bytes, part: float, entry: dict):
        """200 with the full Content-Length, ``part`` of the body, then a TCP RST."""
        entry["status"] = "reset mid-body"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: int(len(body) * part)])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def _json(self, code: int, doc: dict, entry: dict):
        return self._send(code, json.dumps(doc).encode(), entry)

    def _send(self, code: int, body: bytes, entry: dict):
        entry["status"] = code
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _make_tls(d: Path) -> tuple[str, str, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost. Returns (cert, key, ca_pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regkeeper-test-kube-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = d / "apiserver.crt", d / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path), ca.public_bytes(serialization.Encoding.PEM)


def write_kubeconfig(
    path: str | Path,
    contexts: Mapping[str, str | KubeApiServer],
    current: str | None = None,
    *,
    token: str = FAKE_TOKEN,
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig with one cluster/user per context, bearer-token auth.

    A context's value is a server URL (then ``token`` is used, plain HTTP or unverified) or a
    :class:`KubeApiServer` (its URL, its token and, for TLS, its CA as certificate-authority-data).
    ``current`` defaults to the first context; pass ``""`` to write no current-context.
    """
    import yaml

    clusters, users, ctxs = [], [], []
    for name, target in contexts.items():
        cluster: dict = {}
        tok = token
        if isinstance(target, KubeApiServer):
            cluster["server"] = target.url
            if target.token is not None:
                tok = target.token
            if target.ca_pem:
                cluster["certificate-authority-data"] = base64.b64encode(target.ca_pem).decode()
        else:
            cluster["server"] = str(target)
        clusters.append({"name": f"cluster-{name}", "cluster": cluster})
        users.append({"name": f"user-{name}", "user": {"token": tok}})
        ctxs.append(
            {
                "name": name,
                "context": {"cluster": f"cluster-{name}", "user": f"user-{name}", "namespace": namespace},
            }
        )
    doc: dict = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": users,
        "contexts": ctxs,
    }
    if current is None:
        current = next(iter(contexts), "")
    if current:
        doc["current-context"] = current
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    p.chmod(0o600)
    return p


# -- synthetic load ------------------------------------------------------------------------------


def synthetic_pods(
    n: int, images: list[str], *, namespaces: int = 20, seed_pod: dict | None = None
) -> list[dict]:
    """``n`` realistic Pod objects (metadata with labels, ownerReferences and managedFields, spec,
    status with containerStatuses and docker-pullable imageIDs) cycling through ``images``."""
    if seed_pod is None:
        seed_pod = _SEED_POD
    out = []
    for i in range(n):
        p = copy.deepcopy(seed_pod)
        ns = f"team-{i % namespaces:02d}"
        rs = f"svc-{(i // 10) % 500:03d}-7c9f8d6b5"
        name = f"{rs}-{i:05x}"
        img = images[i % len(images)]
        md = p["metadata"]
        md.update(name=name, namespace=ns, uid=str(uuid.UUID(int=i + 1)), resourceVersion=str(100000 + i))
        md["labels"] = {"app.kubernetes.io/name": rs[:-11], "pod-template-hash": "7c9f8d6b5"}
        md["ownerReferences"][0].update(name=rs, uid=str(uuid.UUID(int=10_000_000 + i // 10)))
        c = p["spec"]["containers"][0]
        c["image"] = img
        cs = p["status"]["containerStatuses"][0]
        cs["image"] = img
        repo = (
            img.split("@", 1)[0].rsplit(":", 1)[0] if ":" in img.rsplit("/", 1)[-1] else img.split("@", 1)[0]
        )
        cs["imageID"] = f"docker-pullable://{repo}@sha256:{(i % 97):064x}"
        cs["containerID"] = f"containerd://{i:064x}"
        p["status"]["podIP"] = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        out.append(p)
    return out


_SEED_POD: dict = {
    "metadata": {
        "name": "x",
        "generateName": "x-",
        "namespace": "default",
        "uid": "",
        "resourceVersion": "1",
        "creationTimestamp": "2024-06-01T08:00:00Z",
        "labels": {},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-06-01T07:59:00Z"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "x",
                "uid": "",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "managedFields": [
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-06-01T08:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:generateName": {},
                        "f:labels": {".": {}, "f:pod-template-hash": {}},
                        "f:ownerReferences": {".": {}, 'k:{"uid":"x"}': {}},
                    },
                    "f:spec": {
                        "f:containers": {
                            'k:{"name":"app"}': {
                                ".": {},
                                "f:image": {},
                                "f:imagePullPolicy": {},
                                "f:name": {},
                                "f:ports": {".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {}},
                                "f:resources": {".": {}, "f:limits": {}, "f:requests": {}},
                            }
                        }
                    },
                },
            },
            {
                "manager": "kubelet",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-06-01T08:00:05Z",
                "fieldsType": "FieldsV1",
                "subresource": "status",
                "fieldsV1": {
                    "f:status": {
                        "f:conditions": {},
                        "f:containerStatuses": {},
                        "f:hostIP": {},
                        "f:phase": {},
                        "f:podIP": {},
                        "f:startTime": {},
                    }
                },
            },
        ],
    },
    "spec": {
        "volumes": [
            {
                "name": "kube-api-access-abcde",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            }
        ],
        "containers": [
            {
                "name": "app",
                "image": "x",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                },
                "volumeMounts": [
                    {
                        "name": "kube-api-access-abcde",
                        "readOnly": True,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    }
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "nodeName": "node-1",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-06-01T08:00:05Z"}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "hostIP": "172.18.0.2",
        "hostIPs": [{"ip": "172.18.0.2"}],
        "podIP": "10.0.0.1",
        "podIPs": [{"ip": "10.0.0.1"}],
        "startTime": "2024-06-01T08:00:00Z",
        "containerStatuses": [
            {
                "name": "app",
                "state": {"running": {"startedAt": "2024-06-01T08:00:04Z"}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": "x",
                "imageID": "x",
                "containerID": "x",
                "started": True,
            }
        ],
        "qosClass": "Burstable",
    },
}
