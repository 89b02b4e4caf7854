"""Blob reads of one registry: HEAD, a small blob in memory (digest-checked, cached by digest),
a streamed GET in constant memory, and the image config with its build time. The verbs that
write (manifests, uploads, mounts, DELETE) are in client.py, whose RegistryClient builds on this.
"""

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import requests
import urllib3

from ..cache import DigestCache
from ..errors import DigestMismatchError, NotFoundError, RegistryError
from .errormap import short
from .manifest import CREATED_ANNOTATION, Manifest
from .mediatypes import IMAGE_CONFIG_TYPES
from .transport import RegistryTransport

_STREAM_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


class BlobReader(RegistryTransport):
    """The blob-reading verbs of RegistryClient (see client.py); ``cache`` is its digest cache."""

    cache: DigestCache

    def head_blob(self, repo: str, digest: str) -> int | None:
        """Size of a blob in a repository, or None when absent."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, allow_404=True)
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length") or 0)

    def get_blob(
        self, repo: str, digest: str, *, cache: bool = False, max_bytes: int = 64 * 1024 * 1024
    ) -> bytes:
        """A small blob in memory (configs), digest-checked, read inside the attempt (a broken
        or cut body is retried); cached on disk when ``cache``."""
        if cache:
            hit = self.cache.get("blobs", digest)
            if hit is not None:
                return hit[0]
        data = self.request(
            "GET",
            f"/v2/{repo}/blobs/{digest}",
            repo=repo,
            stream=True,
            read=lambda resp: _read_blob(resp, digest, max_bytes),
        )
        if cache:
            self.cache.put("blobs", digest, data, checked=True)  # _read_blob checked the digest
        return data

    @contextmanager
    def stream_blob(self, repo: str, digest: str, chunk_size: int = 1024 * 1024):
        """Yield ``(chunks, size)``: a streaming GET in constant memory, retried until the
        headers arrive. A break while streaming raises a RegistryError with ``transient=True``
        (the caller restarts the transfer); the digest is checked as the stream ends, a
        mismatch raises DigestMismatchError from the iterator."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, stream=True)
        size = int(resp.headers.get("Content-Length") or -1)
        try:
            yield self._stream_chunks(resp, repo, digest, size, chunk_size), size
        finally:
            resp.close()

    def _stream_chunks(self, resp, repo: str, digest: str, size: int, chunk_size: int) -> Iterator[bytes]:
        algo, _, hexpart = digest.partition(":")
        h, got = hashlib.new(algo), 0
        try:
            for c in resp.iter_content(chunk_size=chunk_size):
                h.update(c)
                got += len(c)
                yield c
        except _STREAM_ERRORS as e:
            raise RegistryError(
                f"connection broke while streaming the blob, after {got} of "
                f"{size if size >= 0 else '?'} bytes; the transfer must restart",
                detail=short(e),
                transient=True,
                registry=self.name,
                repository=repo,
                method="GET",
                path=f"/v2/{repo}/blobs/{digest}",
            ) from None
        if h.hexdigest() != hexpart:
            raise DigestMismatchError(
                f"blob {digest}: content does not match its digest", registry=self.name, repository=repo
            )

    def get_config(self, repo: str, digest: str) -> dict:
        """The image config JSON (cached by digest); {} when it is not a JSON object."""
        raw = self.get_blob(repo, digest, cache=True, max_bytes=8 * 1024 * 1024)
        try:
            doc = json.loads(raw)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def image_created(self, repo: str, manifest: Manifest) -> tuple[datetime | None, str | None]:
        """When the image was built: the config's ``created``, else the
        ``org.opencontainers.image.created`` annotation. Returns (time, source)."""
        from ..models import (
            parse_time,  # models re-exports this package's types: import late
        )

        if manifest.config is not None and manifest.config.media_type in IMAGE_CONFIG_TYPES:
            try:
                cfg = self.get_config(repo, manifest.config.digest)
            except NotFoundError:
                cfg = {}
            t = parse_time(cfg.get("created"))
            if t:
                return t, "config"
        t = parse_time((manifest.annotations or {}).get(CREATED_ANNOTATION))
        if t:
            return t, "annotation"
        return None, None


def _read_blob(resp: requests.Response, digest: str, max_bytes: int) -> bytes:
    """The whole body of a blob GET, bounded and checked against its digest (a mismatch is
    taken for a body cut in transit: transient)."""
    algo, _, hexpart = digest.partition(":")
    h, chunks, size = hashlib.new(algo), [], 0
    for c in resp.iter_content(chunk_size=1024 * 1024):
        size += len(c)
        if size > max_bytes:
            raise RegistryError(f"blob {digest} larger than {max_bytes} bytes")
        h.update(c)
        chunks.append(c)
    if h.hexdigest() != hexpart:
        raise DigestMismatchError(f"blob {digest}: content does not match its digest", transient=True)
    return b"".join(chunks)
