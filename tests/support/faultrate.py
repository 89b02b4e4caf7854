"""Faults at a rate: the fault proxy's random mode (``FaultProxy.random_faults``).

Each response the proxy is about to give (optionally only for ``method`` / ``path_regex``) gets
a fault with probability ``p``; its kind is drawn from a weighted set:

- ``reset``       reset the connection before any response
- ``reset_body``  forward, then reset the connection in the middle of the body
- ``truncate``    forward, announce the full Content-Length, close the connection mid-body
- ``429``         429 with ``Retry-After: retry_after`` (not forwarded)
- ``503``         503 with an empty body (not forwarded)
- ``slow``        wait ``delay`` seconds, then forward normally
- ``garbage``     forward a well-framed half body (weight 0 unless asked for)
- ``reset_after`` forward, then reset before any answer: the request took effect, the answer
                  is lost (weight 0 unless asked for)

Reproducible: a decision is a pure function of ``seed``, the request's key and how many
requests with that key came before it, so thread interleaving between different requests does
not change which request is faulted. The key is the method and the path without its query, an
upload session's id folded away (``/blobs/uploads/<id>`` -> ``/blobs/uploads/``): every PATCH
into one repository is "the same request" whichever session it belongs to.

The cap: a request (key) is never faulted more than ``max_in_row`` times in a row (default 2);
the next one with that key is forwarded untouched. So a call retried at least
``max_in_row + 1`` times in all (the transport's default attempts are 6, the test configs' 4)
always completes: these runs prove retries, not giving up. A chunked upload is the exception
to "one request, retried": PATCH is never retried alone, a failed chunk restarts the whole blob
(up to 3 starts) and every start sends its chunks anew. So the PATCHes into one repository
count as one request whose streak ends only when an upload's final PUT goes through: after
``max_in_row`` faulted PATCHes, every PATCH is forwarded until a blob is finished. (A restart
caused by the SOURCE proxy, a stream cut mid-body, is that proxy's own count: three faulted
starts of one blob in a row need faults on both sides, about p**3 per blob.)
``injected`` counts what was injected per kind, ``seen`` the responses considered, ``capped``
the faults the cap turned into forwards.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter

__all__ = ["DEFAULT_WEIGHTS", "RATE_KINDS", "FaultRate", "request_key"]

RATE_KINDS = ("reset", "reset_body", "truncate", "429", "503", "slow", "garbage", "reset_after")
DEFAULT_WEIGHTS = {"reset": 1, "reset_body": 1, "truncate": 1, "429": 1, "503": 1, "slow": 1}
_UPLOAD_ID = re.compile(r"(/blobs/uploads/)[^/?]+")


def request_key(method: str, path: str) -> str:
    """``METHOD /path`` without the query, upload session ids folded away."""
    path = _UPLOAD_ID.sub(r"\1", path.split("?", 1)[0])
    return f"{method.upper()} {path}"


def _uniform(*parts) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) from a hash of ``parts``."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return int.from_bytes(h[:8], "big") / 2**64, int.from_bytes(h[8:], "big") / 2**64


class FaultRate:
    """Decides, per response, whether and which fault to inject (thread-safe)."""

    def __init__(
        self,
        p: float,
        *,
        seed: int | str = 0,
        weights: dict[str, float] | None = None,
        method: str | None = None,
        path_regex: str | None = None,
        max_in_row: int = 2,
        retry_after: float | str = 0,
        delay: float = 0.2,
        part: float = 0.5,
    ):
        if not 0 <= p <= 1:
            raise ValueError("p is a probability: 0 <= p <= 1")
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        bad = set(weights) - set(RATE_KINDS)
        if bad:
            raise ValueError(f"fault kinds must be among {RATE_KINDS}, not {sorted(bad)}")
        self.weights = [(k, float(w)) for k, w in weights.items() if w > 0]
        if not self.weights:
            raise ValueError("at least one fault kind needs a weight > 0")
        if max_in_row < 1:
            raise ValueError("max_in_row must be >= 1")
        if not 0 <= part < 1:
            raise ValueError("part is the fraction of the body sent: 0 <= part < 1")
        self.p, self.seed, self.max_in_row = float(p), seed, int(max_in_row)
        self.method = method.upper() if method else None
        self.path_regex = re.compile(path_regex) if path_regex else None
        self.retry_after, self.delay, self.part = retry_after, float(delay), float(part)
        self.injected: Counter = Counter()
        self.seen = 0
        self.capped = 0  # faults drawn but not injected: the cap said forward
        self._occurrences: Counter = Counter()
        self._streak: Counter = Counter()
        self._lock = threading.Lock()

    def _kind(self, u: float) -> str:
        total = sum(w for _, w in self.weights)
        acc = 0.0
        for kind, w in self.weights:
            acc += w / total
            if u < acc:
                return kind
        return self.weights[-1][0]

    def decide(self, method: str, path: str) -> str | None:
        """The fault kind for this response, or None to forward it untouched."""
        if self.method and self.method != method.upper():
            return None
        if self.path_regex and not self.path_regex.search(path):
            return None
        key = request_key(method, path)
        chunk = key.startswith("PATCH ")  # one streak per repository's uploads
        with self._lock:
            self.seen += 1
            n = self._occurrences[key]
            self._occurrences[key] += 1
            hit, pick = _uniform(self.seed, key, n)
            if hit < self.p and self._streak[key] < self.max_in_row:
                self._streak[key] += 1
                kind = self._kind(pick)
                self.injected[kind] += 1
                return kind
            if hit < self.p:
                self.capped += 1
            if not chunk:
                self._streak[key] = 0
            if key.startswith("PUT ") and key.endswith("/blobs/uploads/"):
                self._streak["PATCH " + key[len("PUT ") :]] = 0  # a blob finished
            return None

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    def __repr__(self) -> str:
        return (
            f"FaultRate(p={self.p}, seed={self.seed!r}, seen={self.seen}, "
            f"injected={dict(self.injected)}, capped={self.capped})"
        )
