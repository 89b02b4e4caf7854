"""Direct read access to a distribution registry's storage (filesystem or S3).

The HTTP API cannot say when a tag was pushed, nor list untagged manifests; the storage can:
- push time of a tag = mtime (filesystem) / LastModified (S3) of
  ``docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/current/link``;
- every manifest a repository holds = ``_manifests/revisions/sha256/<hex>/link``;
- an emptied repository can be removed so ``_catalog`` no longer lists it (only during the
  reclamation window, with the registry read-only).
"""

import errno
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from .errors import RegkeeperError

log = logging.getLogger(__name__)

V2 = "docker/registry/v2"
LINK_READS = 5  # reads of a link found empty (being rewritten) before it counts as empty
_pause = time.sleep  # between those reads (a test stands in for the registry's writer here)


class StorageReader:
    kind = "none"

    def push_times(self, repo: str) -> dict[str, datetime]:
        raise NotImplementedError

    def revisions(self, repo: str) -> list[str]:
        return sorted(self.revision_times(repo))

    def revision_times(self, repo: str) -> dict[str, datetime]:
        """Every manifest digest linked in the repository -> when it was pushed."""
        raise NotImplementedError

    def repositories(self) -> list[str]:
        raise NotImplementedError

    def repository_is_empty(self, repo: str) -> bool:
        """True when the repository has no tags left in storage."""
        return not self.push_times(repo)

    def remove_repository(self, repo: str) -> None:
        raise NotImplementedError


class FilesystemStorage(StorageReader):
    kind = "filesystem"

    def __init__(self, root: str | os.PathLike, key: str = "storage.path", registry: str | None = None):
        self.root = Path(root)
        self.base = self.root / V2
        self.key = key  # the config key that names the root, and whose it is (errors name them)
        self.owner = f"registry {registry}: " if registry else ""

    def _repo_dir(self, repo: str) -> Path:
        if ".." in repo.split("/") or repo.startswith("/"):
            raise RegkeeperError(f"repository name {repo!r} is not valid")
        return self.base / "repositories" / repo

    def check(self) -> None:
        if not self.base.is_dir():
            raise RegkeeperError(
                f"{self.owner}{self.key} {self.root}: no {V2} directory there; point {self.key} "
                "at the registry's rootdirectory"
            )

    def _tag_links(self, repo: str, read) -> dict:
        """tag -> ``read(path of its current/link)``, for every tag whose link exists: the one
        walk of a repository's tags (push times, and the digests a cache's eviction re-reads)."""
        tags_dir = self._repo_dir(repo) / "_manifests" / "tags"
        out: dict = {}
        try:
            entries = list(os.scandir(tags_dir))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for e in entries:
            try:
                out[e.name] = read(os.path.join(e.path, "current", "link"))
            except FileNotFoundError:
                continue
        return out

    def push_times(self, repo: str) -> dict[str, datetime]:
        return self._tag_links(repo, lambda p: datetime.fromtimestamp(os.stat(p).st_mtime, UTC))

    def revision_times(self, repo: str) -> dict[str, datetime]:
        rev = self._repo_dir(repo) / "_manifests" / "revisions"
        out: dict[str, datetime] = {}
        try:
            algos = list(os.scandir(rev))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for a in algos:
            try:
                hashes = list(os.scandir(a.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for h in hashes:
                try:
                    st = os.stat(os.path.join(h.path, "link"))
                except FileNotFoundError:
                    continue
                out[f"{a.name}:{h.name}"] = datetime.fromtimestamp(st.st_mtime, UTC)
        return out

    def repositories(self) -> list[str]:
        root = self.base / "repositories"
        out = []
        for dirpath, dirnames, _ in os.walk(root):
            if "_manifests" in dirnames:
                out.append(os.path.relpath(dirpath, root))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    def remove_repository(self, repo: str) -> None:
        d = self._repo_dir(repo)
        if self.push_times(repo):
            raise RegkeeperError(f"repository {repo!r} still has tags in storage; not removed")
        if d.is_dir():
            shutil.rmtree(d)
            # drop now-empty parent namespaces so _catalog forgets them too
            parent = d.parent
            stop = self.base / "repositories"
            while parent != stop and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    # -- what a pull-through cache's eviction reads and removes (regkeeper.proxycache) --------
    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if not hexd or "/" in digest or ".." in digest:
            raise RegkeeperError(f"digest {digest!r} is not valid")
        return self.base / "blobs" / algo / hexd[:2] / hexd / "data"

    def blob_size(self, digest: str) -> int | None:
        """Bytes of a blob's data file; None when the storage does not hold it."""
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def read_blob(self, digest: str) -> bytes | None:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def tag_digests(self, repo: str) -> dict[str, str]:
        """tag -> the digest its ``current/link`` names (a link being rewritten: read again;
        one that stays empty is left out, with a warning)."""
        out = self._tag_links(repo, _read_link)
        for tag in [t for t, dg in out.items() if not dg]:
            log.warning("storage: %s:%s: the tag's link stays empty; tag left out", repo, tag)
            del out[tag]
        return out

    def unlink_manifest(self, repo: str, digest: str, tags: list[str]) -> None:
        """Remove a manifest's revision link and the tags naming it (their whole tag directory,
        history included), so garbage-collect no longer marks its blobs. Only inside the
        reclaim window. Links already gone are fine (idempotent)."""
        algo, hexd = _link_names(repo, digest, tags)
        mdir = self._repo_dir(repo) / "_manifests"
        for tag in tags:
            _remove_tree(mdir / "tags" / tag)
        _remove_tree(mdir / "revisions" / algo / hexd)


def _link_names(repo: str, digest: str, tags: list[str]) -> tuple[str, str]:
    """(algorithm, hex) of ``digest``, once every name that becomes a storage path is checked:
    a repository, tag or digest that could reach outside its directory is refused by name,
    before anything is removed (both storages)."""
    if not repo or any(p in ("", ".", "..") for p in repo.split("/")):
        raise RegkeeperError(f"repository {repo!r} is not valid")
    for tag in tags:
        if "/" in tag or tag in ("", ".", ".."):
            raise RegkeeperError(f"tag {tag!r} in {repo} is not valid")
    algo, _, hexd = digest.partition(":")
    if not algo or not hexd or "/" in digest or algo in (".", "..") or hexd in (".", ".."):
        raise RegkeeperError(f"{repo}@{digest}: digest is not valid")
    return algo, hexd


def _read_link(path: str, attempts: int = LINK_READS) -> str:
    """A link file's digest. A live registry rewrites a link in place (distribution's
    filesystem driver truncates, then writes: a pull through a cache re-links its tag), so a
    read can land in between and find it empty: read again, a moment later. "" when it stays
    empty."""
    for n in range(attempts):
        text = Path(path).read_text().strip()
        if text or n + 1 >= attempts:
            return text
        _pause(0.01 * (n + 1))
    return ""


def _remove_tree(path: Path, attempts: int = 3) -> None:
    """Remove a directory tree; one already gone is fine, any other failure names the path. A
    cache still fetching writes a link into it meanwhile (its read-only mode does not stop that)
    and rmtree finds a directory not empty: removed again (a cache miss later, nothing more)."""
    for n in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno.ENOTEMPTY and n + 1 < attempts:
                continue
            raise RegkeeperError(f"storage: cannot remove {path}: {e.strerror}") from None


class S3Storage(StorageReader):
    kind = "s3"

    def __init__(self, client, bucket: str, root_directory: str = ""):
        self.client = client
        self.bucket = bucket
        rd = root_directory.strip("/")
        self.root_prefix = f"{rd}/" if rd else ""  # everything the registry stores
        self.prefix = f"{rd}/{V2}" if rd else V2

    def _list(self, prefix: str):
        """Every object under ``prefix``; a failure names the bucket, prefix and code
        (``_call``), never botocore's bare exception."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        it = iter(pages)
        while True:
            page = self._call("list", prefix, lambda: next(it, None))
            if page is None:
                return
            yield from page.get("Contents", []) or []

    def push_times(self, repo: str) -> dict[str, datetime]:
        prefix = f"{self.prefix}/repositories/{repo}/_manifests/tags/"
        out = {}
        for obj in self._list(prefix):
            rest = obj["Key"][len(prefix) :]
            parts = rest.split("/")
            if len(parts) == 3 and parts[1] == "current" and parts[2] == "link":
                out[parts[0]] = obj["LastModified"].astimezone(UTC)
        return out

    def revision_times(self, repo: str) -> dict[str, datetime]:
        prefix = f"{self.prefix}/repositories/{repo}/_manifests/revisions/"
        out: dict[str, datetime] = {}
        for obj in self._list(prefix):
            parts = obj["Key"][len(prefix) :].split("/")
            if len(parts) == 3 and parts[2] == "link":
                out[f"{parts[0]}:{parts[1]}"] = obj["LastModified"].astimezone(UTC)
        return out

    def repositories(self) -> list[str]:
        prefix = f"{self.prefix}/repositories/"
        repos = set()
        for obj in self._list(prefix):
            rest = obj["Key"][len(prefix) :]
            if "/_manifests/" in rest:
                repos.add(rest.split("/_manifests/")[0])
        return sorted(repos)

    def remove_repository(self, repo: str) -> None:
        if self.push_times(repo):
            raise RegkeeperError(f"repository {repo!r} still has tags in storage; not removed")
        prefix = f"{self.prefix}/repositories/{repo}/"
        keys = [{"Key": o["Key"]} for o in self._list(prefix)]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True}
            )

    # -- what a pull-through cache's eviction reads and removes (regkeeper.proxycache) --------
    def check(self) -> None:
        self._call("list", self.prefix, lambda: self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1))

    def _blob_key(self, digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        if not hexd or "/" in digest or ".." in digest:
            raise RegkeeperError(f"digest {digest!r} is not valid")
        return f"{self.prefix}/blobs/{algo}/{hexd[:2]}/{hexd}/data"

    def _call(self, what: str, key: str, fn):
        """A boto3 call; a missing key is None, any other failure names the bucket, key and code."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", "error"))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise RegkeeperError(
                f"storage s3://{self.bucket}/{key}: {what} failed: {code} (HTTP {status})"
            ) from None
        except BotoCoreError as e:
            raise RegkeeperError(
                f"storage s3://{self.bucket}/{key}: {what} failed: {type(e).__name__}"
            ) from None

    def blob_size(self, digest: str) -> int | None:
        key = self._blob_key(digest)
        head = self._call("HEAD", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        return int(head["ContentLength"]) if head is not None else None

    def read_blob(self, digest: str) -> bytes | None:
        key = self._blob_key(digest)
        obj = self._call("GET", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        return obj["Body"].read() if obj is not None else None

    def tag_digests(self, repo: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for tag in self.push_times(repo):
            key = f"{self.prefix}/repositories/{repo}/_manifests/tags/{tag}/current/link"
            obj = self._call("GET", key, lambda k=key: self.client.get_object(Bucket=self.bucket, Key=k))
            if obj is not None:
                out[tag] = obj["Body"].read().decode().strip()
        return out

    def unlink_manifest(self, repo: str, digest: str, tags: list[str]) -> None:
        """As :meth:`FilesystemStorage.unlink_manifest`: every key under the tags' directories
        and the revision's."""
        algo, hexd = _link_names(repo, digest, tags)
        base = f"{self.prefix}/repositories/{repo}/_manifests"
        prefixes = [f"{base}/tags/{t}/" for t in tags] + [f"{base}/revisions/{algo}/{hexd}/"]
        keys = [{"Key": o["Key"]} for p in prefixes for o in self._list(p)]
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            self._call(
                "DELETE",
                batch[0]["Key"],
                lambda b=batch: self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}
                ),
            )


def s3_client(
    endpoint: str | None,
    access_key=None,
    secret_key=None,
    region: str = "us-east-1",
    verify: bool | str | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    retries: int = 5,
):
    """A boto3 S3 client with explicit timeouts and standard retries (used by storage, backup
    and capacity)."""
    import boto3
    from botocore.config import Config as BotoConfig

    kw = {}
    if access_key is not None:
        kw["aws_access_key_id"] = access_key.get() if hasattr(access_key, "get") else access_key
        kw["aws_secret_access_key"] = secret_key.get() if hasattr(secret_key, "get") else secret_key
    cfg = BotoConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": retries, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    if verify is None and endpoint and endpoint.startswith("http://"):
        verify = False
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=cfg, verify=verify, **kw)


def storage_for(rc) -> StorageReader | None:
    """The storage reader for a ``config.RegistryConfig``, or None without storage access
    (a proxy's ``proxyCache.storage`` when it has no ``storage`` section)."""
    st = rc.storage
    if st is None and rc.type == "proxy" and rc.proxy_cache is not None and rc.proxy_cache.storage:
        return FilesystemStorage(rc.proxy_cache.storage, "proxyCache.storage", rc.name)
    if st is not None and st.type in ("directory", "filesystem"):
        return FilesystemStorage(st.path, registry=rc.name)
    if (st is not None and st.type == "s3") or (rc.type == "s3" and rc.access_key is not None):
        bucket = st.bucket if st and st.bucket else rc.bucket
        root = st.root_directory if st else ""
        client = s3_client(
            rc.endpoint,
            rc.access_key,
            rc.secret_key,
            rc.region,
            connect_timeout=rc.connect_timeout.total_seconds(),
            read_timeout=rc.timeout.total_seconds(),
        )
        return S3Storage(client, bucket, root)
    return None
