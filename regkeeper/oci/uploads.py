"""Blob uploads of one registry: open a session, a monolithic PUT or chunked PATCHes with
Content-Range in constant memory, and the final PUT whose lost answer is checked by a HEAD.
RegistryClient (client.py) builds on this; mounts and cancelling a session are there.
"""

from collections.abc import Callable, Iterator
from urllib.parse import urlencode, urljoin

import requests

from ..errors import NotFoundError, RegistryError
from .blobs import BlobReader

DEFAULT_CHUNK = 16 * 1024 * 1024


def _with_query(url: str, **params) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


class BlobUploads(BlobReader):
    """The upload verbs of RegistryClient (see client.py)."""

    def _upload_location(self, resp: requests.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(
                "upload started without a Location header", registry=self.name, status=resp.status_code
            )
        return urljoin(self.url + "/", loc)

    def start_upload(self, repo: str) -> str:
        """Open an upload session (``POST /v2/<repo>/blobs/uploads/``); returns its location.
        A read-only registry answers 405: ReadOnlyError."""
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, ok=(202,))
        return self._upload_location(resp)

    def upload_blob(
        self,
        repo: str,
        digest: str,
        data: bytes | Callable[[], Iterator[bytes]],
        size: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        location: str | None = None,
        on_location: Callable[[str], None] | None = None,
    ) -> None:
        """Upload a blob. ``data`` is bytes (monolithic PUT) or a callable returning a fresh
        chunk iterator (chunked PATCHes with Content-Range, constant memory). The registry
        checks the digest on the final PUT. ``location``: an upload session already open (a
        mount answered 202); else one is opened. ``on_location`` hears every location of the
        session (opened, then after each chunk) so a caller can cancel an unfinished one."""
        if location is None:
            location = self.start_upload(repo)
            if on_location is not None:
                on_location(location)
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._finish_upload(
                repo, digest, location, bytes(data), {"Content-Type": "application/octet-stream"}
            )
            return
        location, offset = self._upload_chunks(repo, location, data(), chunk_size, on_location)
        if size is not None and offset != size:
            raise RegistryError(
                f"blob {digest}: uploaded {offset} bytes, expected {size}",
                registry=self.name,
                repository=repo,
            )
        self._finish_upload(repo, digest, location, b"", {"Content-Length": "0"})

    def _finish_upload(self, repo: str, digest: str, location: str, data: bytes, headers: dict) -> None:
        """The final PUT of an upload session. When its answer is lost (a reset after the
        registry committed the blob) the transport's retry finds the session closed (404
        BLOB_UPLOAD_UNKNOWN): the upload succeeded if the blob is now in the repository."""
        try:
            self.request(
                "PUT",
                _with_query(location, digest=digest),
                repo=repo,
                headers=headers,
                data=data,
                ok=(201, 204),
            )
        except NotFoundError:
            if self.head_blob(repo, digest) is None:
                raise

    def _upload_chunks(
        self,
        repo: str,
        location: str,
        pieces: Iterator[bytes],
        chunk_size: int,
        on_location: Callable[[str], None] | None = None,
    ) -> tuple[str, int]:
        """PATCH ``pieces`` in chunks of ``chunk_size``; returns (next location, bytes sent)."""
        offset = 0
        buf = bytearray()

        def flush(chunk: bytes):
            nonlocal location, offset
            end = offset + len(chunk) - 1
            location = self._upload_location(self._patch(repo, location, chunk, offset, end))
            offset = end + 1
            if on_location is not None:
                on_location(location)

        for piece in pieces:
            buf += piece
            while len(buf) >= chunk_size:
                flush(bytes(buf[:chunk_size]))
                del buf[:chunk_size]
        if buf:
            flush(bytes(buf))
        return location, offset

    def _patch(self, repo: str, location: str, chunk: bytes, start: int, end: int) -> requests.Response:
        # PATCH is never retried by the transport (not idempotent in general); a failed chunk
        # fails the upload and the caller retries the whole blob.
        return self.request(
            "PATCH",
            location,
            repo=repo,
            data=chunk,
            ok=(202, 204),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{end}",
                "Content-Length": str(len(chunk)),
            },
        )
