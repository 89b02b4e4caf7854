"""The transport's ``requests`` session (``transport.RegistryTransport.session``): requests reads
the environment on every call (proxy variables and NO_PROXY, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE,
~/.netrc: two passes over ``os.environ`` and two ``stat`` calls per request, about 0.15 ms of
client CPU and more on a loaded machine). This session reads it once per origin (scheme and
host) and per settings, for the client's lifetime, with the same outcome: the registry, its
token service and a redirect target (rebuilt by requests as before) each get what requests
would have given them. An environment changed after the client was built is not seen (clients
live for one run)."""

import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_netrc_auth


def _as_is(r):
    """No credentials from ~/.netrc: the request goes as prepared (a callable auth stops requests
    from looking the file up again)."""
    return r


class EnvOnceSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._env: dict[tuple, dict[str, Any]] = {}
        self._netrc: dict[str, Any] = {}
        self._env_lock = threading.Lock()

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or not self.trust_env:  # explicit proxies: requests' own merge, every time
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        p = urlsplit(url)
        key = (p.scheme, p.netloc, stream, verify, cert if not isinstance(cert, list) else tuple(cert))
        with self._env_lock:
            got = self._env.get(key)
        if got is None:
            got = super().merge_environment_settings(url, {}, stream, verify, cert)
            with self._env_lock:
                self._env[key] = got
        return {**got, "proxies": dict(got["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth and isinstance(request.url, str):
            p = urlsplit(request.url)
            origin = f"{p.scheme}://{p.netloc}"
            with self._env_lock:
                known = origin in self._netrc
                auth = self._netrc.get(origin)
            if not known:
                auth = get_netrc_auth(request.url)
                with self._env_lock:
                    self._netrc[origin] = auth
            request.auth = auth or _as_is
        return super().prepare_request(request)
