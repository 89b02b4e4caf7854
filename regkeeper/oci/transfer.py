"""The ONE blob transfer: make a blob present in a repository of a target registry.

HEAD on the target (skipped when the caller knows the repository is fresh) -> cross-repository
mount from candidate repositories -> upload from a pluggable source. Replicate (source: the
primary registry, streamed) and restore (sources: config bytes from the snapshot, then the
``blobSource`` registry) both call :meth:`BlobTransfer.ensure`; neither sends a HEAD, mount,
upload or cancel of its own. The quirks, in this one place:

- a mount may be answered 202 with an upload session instead of 201 (distribution does so when
  the ``from`` repository does not hold the blob or the mount is not allowed): the blob is then
  uploaded INTO that session, never into a second one;
- blobs up to ``MONOLITHIC_MAX`` go in one PUT, larger ones (or of unknown size) in chunked
  PATCHes of ``CHUNK_SIZE`` in constant memory; the registry checks the digest on the final PUT,
  the source stream is checked against it as it ends;
- an upload session opened here and not finished is cancelled (DELETE on its latest location,
  ``RegistryClient.cancel_upload``), so a failed copy leaves no half upload behind;
- a source stream that broke mid-way (``RegistryError`` with ``transient`` set) or a chunk that
  failed restarts the blob from scratch, bounded by a ``RetryPolicy`` (``RESTARTS``). An error
  the transport already retried (``attempts`` set) is never retried here: every HTTP call is
  retried once, in the transport, and nothing above this module retries a blob again.
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..cache import verify_digest
from ..errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    SourceBlobMissing,
)
from ..retry import RetryPolicy, run_with_retries
from .client import RegistryClient
from .uploads import DEFAULT_CHUNK

log = logging.getLogger("regkeeper.oci.transfer")

# the thresholds, in one place
MONOLITHIC_MAX = 4 * 1024 * 1024  # blobs up to this size: read in memory, one PUT
CHUNK_SIZE = DEFAULT_CHUNK  # larger blobs: streamed, PATCHed in chunks of this size
RESTARTS = RetryPolicy(attempts=3, base=0.5)  # whole-blob restarts after a broken stream

PRESENT, MOUNTED, UPLOADED, UNAVAILABLE = "present", "mounted", "uploaded", "unavailable"


@dataclass(slots=True)
class Transferred:
    """What ``ensure`` did (or, in a dry run, would do): ``action`` is PRESENT, MOUNTED,
    UPLOADED or UNAVAILABLE (no candidate to mount from and no source holds the blob);
    ``size`` the blob's bytes (-1 unknown), ``from_repo`` where it was mounted from, ``source``
    the source uploaded from, ``restarts`` how often a broken upload was started again."""

    action: str
    size: int = -1
    from_repo: str | None = None
    source: object = None
    restarts: int = 0
    dry_run: bool = False

    @property
    def available(self) -> bool:
        return self.action != UNAVAILABLE


class RegistrySource:
    """Bytes from a registry: the first of ``repos`` that holds the blob. Small blobs are read
    in memory (retried by the transport), large ones streamed. With ``check`` false (the
    default for a single repository: replicate's manifest says the blob is there) no HEAD is
    sent before reading; a blob the source answers 404 for raises ``SourceBlobMissing``."""

    in_memory = False

    def __init__(self, client: RegistryClient, repos: str | Sequence[str], *, check: bool | None = None):
        self.client = client
        self.repos = [repos] if isinstance(repos, str) else list(dict.fromkeys(repos))
        self.check = len(self.repos) > 1 if check is None else check
        self.repo = self.repos[0] if self.repos else None

    def __repr__(self) -> str:
        return f"RegistrySource({self.client.name!r}, {self.repos!r})"

    def locate(self, digest: str, dry_run: bool = False) -> int | None:
        """The blob's size (-1 when not asked) if this source can supply it, else None."""
        if not self.repos:
            return None
        if not self.check and not dry_run:
            return -1
        for repo in self.repos:
            size = self.client.head_blob(repo, digest)
            if size is not None:
                self.repo = repo
                return size
        return None

    def _missing(self, digest: str, e: NotFoundError) -> SourceBlobMissing:
        return SourceBlobMissing(
            f"blob {digest} is gone from the source",
            registry=self.client.name,
            repository=self.repo,
            status=404,
            method=e.method,
            path=e.path,
        )

    def _located(self) -> str:
        if self.repo is None:
            raise ValueError(f"{self!r}: no repository to read a blob from")
        return self.repo

    def read(self, digest: str, max_bytes: int) -> bytes:
        try:
            return self.client.get_blob(self._located(), digest, max_bytes=max_bytes)
        except NotFoundError as e:
            raise self._missing(digest, e) from None

    def chunks(self, digest: str) -> Iterator[bytes]:
        """The blob streamed (a fresh GET per call), checked against its digest as it ends."""
        try:
            with self.client.stream_blob(self._located(), digest) as (pieces, _size):
                yield from pieces
        except NotFoundError as e:
            raise self._missing(digest, e) from None


class BytesSource:
    """Bytes in hand (restore: a config blob from the snapshot), ``data`` or loaded by ``load``
    on first use, used only when they hash to the digest. ``probe`` answers a dry run without
    loading (e.g. "the snapshot holds this object")."""

    in_memory = True

    def __init__(
        self,
        data: bytes | None = None,
        *,
        load: Callable[[], bytes | None] | None = None,
        probe: Callable[[], bool] | None = None,
        label: str = "bytes in hand",
    ):
        self._data, self._load, self._probe, self.label = data, load, probe, label

    def __repr__(self) -> str:
        return f"BytesSource({self.label!r})"

    def _bytes(self) -> bytes | None:
        if self._data is None and self._load is not None:
            self._data, self._load = self._load(), None
        return self._data

    def locate(self, digest: str, dry_run: bool = False) -> int | None:
        if dry_run and self._probe is not None:
            return -1 if self._probe() else None
        data = self._bytes()
        return len(data) if data is not None and verify_digest(digest, data) else None

    def read(self, digest: str, max_bytes: int | None = None) -> bytes:
        data = self._bytes()
        if data is None:
            raise SourceBlobMissing(f"blob {digest}: {self.label} are not available")
        return data


class _Session:
    """The upload session of one attempt: its latest location while unfinished."""

    def __init__(self, location: str | None):
        self.location = location

    def track(self, location: str) -> None:
        self.location = location


class BlobTransfer:
    """Copies blobs into repositories of one target registry (thread-safe, shareable)."""

    def __init__(
        self,
        target: RegistryClient,
        *,
        chunk_size: int = CHUNK_SIZE,
        monolithic_max: int = MONOLITHIC_MAX,
        restarts: RetryPolicy = RESTARTS,
    ):
        self.dst = target
        self.chunk_size = max(1, int(chunk_size))
        self.monolithic_max = min(int(monolithic_max), self.chunk_size)
        self.policy = restarts

    def ensure(
        self,
        repo: str,
        digest: str,
        size: int = -1,
        sources: Sequence = (),
        *,
        mount_from: Sequence[str] = (),
        mount_if_present: Sequence[str] = (),
        check_present: bool = True,
        dry_run: bool = False,
    ) -> Transferred:
        """Make blob ``digest`` (``size`` bytes, -1 unknown) present in ``repo``.

        ``check_present``: HEAD the target first (pass False when the repository is known to
        lack it). ``mount_from``: repositories of the target believed to hold the blob, tried in
        order; ``mount_if_present``: candidates HEADed first. ``sources``: where bytes can come
        from, the first that can supply the blob is used. ``dry_run``: HEADs only, nothing
        written; the answer says what would be done."""
        if check_present:
            got = self.dst.head_blob(repo, digest)
            if got is not None:
                return Transferred(PRESENT, got, dry_run=dry_run)
        done, location = self._mount(repo, digest, size, mount_from, mount_if_present, dry_run)
        if done is not None:
            return done
        try:
            source, located = self._pick(digest, sources, dry_run)
            if source is None:
                if location is not None and not check_present:
                    # a registry with one global blob store may answer every mount with an
                    # upload session although the blob is there already: then it is linked
                    got = self.dst.head_blob(repo, digest)
                    if got is not None:
                        return Transferred(PRESENT, got)
                return Transferred(UNAVAILABLE, size, dry_run=dry_run)
            size = located if located >= 0 else size
            if dry_run:
                return Transferred(UPLOADED, size, source=source, dry_run=True)
            held, location = location, None  # the upload owns (and cancels) the session now
            restarts = self._upload(repo, digest, size, source, held)
            return Transferred(UPLOADED, size, source=source, restarts=restarts)
        finally:
            if location is not None:
                self._cancel(repo, location)

    # ------------------------------------------------------------------ mount

    def _mount(
        self, repo: str, digest: str, size: int, trusted: Sequence[str], checked: Sequence[str], dry_run: bool
    ) -> tuple[Transferred | None, str | None]:
        """(MOUNTED, None), or (None, the upload session a mount opened instead), or (None, None)."""
        seen = {repo}
        for from_repo, check in [(r, False) for r in trusted] + [(r, True) for r in checked]:
            if from_repo in seen:
                continue
            seen.add(from_repo)
            if check and self.dst.head_blob(from_repo, digest) is None:
                continue
            if dry_run:
                return Transferred(MOUNTED, size, from_repo, dry_run=True), None
            try:
                location = self.dst.mount_blob(repo, digest, from_repo)
            except RegistryError as e:
                if e.attempts:  # retried by the transport already: the target is failing
                    raise
                log.info("mount of %s into %s from %s refused: %s", digest, repo, from_repo, e)
                continue
            if location is None:
                return Transferred(MOUNTED, size, from_repo), None
            log.debug("mount of %s into %s from %s answered with an upload session", digest, repo, from_repo)
            return None, location
        return None, None

    @staticmethod
    def _pick(digest: str, sources: Sequence, dry_run: bool):
        for source in sources:
            located = source.locate(digest, dry_run)
            if located is not None:
                return source, located
        return None, -1

    # ------------------------------------------------------------------ upload

    def _upload(self, repo: str, digest: str, size: int, source, location: str | None) -> int:
        """Upload from ``source`` (into ``location`` first when given); a broken attempt
        cancels its session and starts again from scratch. Returns the number of restarts."""
        held = [location]
        restarts = 0

        def attempt() -> None:
            session = _Session(held.pop() if held else None)
            try:
                self._send(repo, digest, size, source, session)
            except Exception:
                if session.location is not None:
                    self._cancel(repo, session.location)
                raise

        def restarted(exc, reason, n, delay) -> None:
            nonlocal restarts
            restarts += 1

        run_with_retries(
            attempt,
            self.policy,
            f"registry {self.dst.name!r}: blob {digest} into {repo}",
            restarted,
            logger=log,
        )
        return restarts

    def _send(self, repo: str, digest: str, size: int, source, session: _Session) -> None:
        if source.in_memory or 0 <= size <= self.monolithic_max:
            data = source.read(digest, self.monolithic_max + 1)
            if size >= 0 and len(data) != size:
                raise DigestMismatchError(
                    f"blob {digest}: source served {len(data)} bytes, the manifest says {size}",
                    repository=repo,
                )
            self.dst.upload_blob(repo, digest, data, location=session.location, on_location=session.track)
        else:
            self.dst.upload_blob(
                repo,
                digest,
                lambda: source.chunks(digest),
                size=size if size >= 0 else None,
                chunk_size=self.chunk_size,
                location=session.location,
                on_location=session.track,
            )
        session.location = None  # finished: nothing left to cancel

    def _cancel(self, repo: str, location: str) -> None:
        try:
            self.dst.cancel_upload(repo, location)
        except Exception as e:  # noqa: BLE001 - the registry purges stale uploads itself
            log.info(
                "registry %r: cancelling an unfinished upload into %s failed: %s", self.dst.name, repo, e
            )
