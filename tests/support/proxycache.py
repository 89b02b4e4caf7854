"""A real pull-through cache for tests: an upstream distribution registry and a second one in
proxy mode (``proxy: remoteurl:``) in front of it, images pulled through the cache with skopeo,
a recorded Kubernetes API naming one cached image, the pull store, and a regkeeper config whose
reclaim window restarts the cache (RegistryControl) like systemctl or kubectl would.

The cache runs with ``storage.cache.blobdescriptor: inmemory`` (Debian's default config): after
garbage-collect that in-memory cache still believes evicted blobs are local until the registry
restarts (found for real: pulls then fail with a truncated blob), so readWrite must restart it.
"""

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regkeeper.config import load_config
from regkeeper.pulls.receiver import PullReceiver
from regkeeper.pulls.store import PullStore
from tests.support import images
from tests.support.kubeapi import KubeApiServer, write_kubeconfig
from tests.support.procs import free_port, wait_until
from tests.support.pulls import notifications
from tests.support.registry import RegistryServer
from tests.support.rkconfig import RegistryControl, write_config

NAME = "cache"
V2 = "docker/registry/v2/repositories"
LAYER = 300_000  # bytes of each image's own layer
TOKEN = "cache-pull-token"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"


def layer(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _deployment(image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            }
        },
    }


class ProxyStack:
    def __init__(self, tmp: Path, *, notify: bool = False, s3: dict | None = None):
        """``notify``: the cache notifies a pull-event receiver (``start_receiver``) on
        ``.events_port``; skopeo's pulls are excluded (a pre-warming job), curl's with a
        containerd user agent count. ``s3``: the cache stores on S3 (``RegistryServer``'s
        ``s3=`` dict: endpoint, bucket, access_key, secret_key)."""
        self.s3 = s3
        self.tmp = Path(tmp)
        self.events_port = free_port() if notify else None
        extra: dict = {"proxy": {"remoteurl": "?"}, "storage": {"cache": {"blobdescriptor": "inmemory"}}}
        if self.events_port is not None:
            extra |= notifications(self.events_port, TOKEN, NAME)
        self.rx: PullReceiver | None = None
        self.up = RegistryServer(self.tmp / "upstream")
        extra["proxy"]["remoteurl"] = self.up.url
        try:
            self.cache = RegistryServer(
                self.tmp / "cache", extra_config=extra, storage="s3" if s3 else "filesystem", s3=s3
            )
        except BaseException:
            self.up.stop()
            raise
        self.ctl = RegistryControl(self.cache)
        self.api: KubeApiServer | None = None
        self.store_url = f"sqlite:///{self.tmp / 'state' / 'pulls.sqlite'}"
        self.digests: dict[str, str] = {}
        self.pushed: dict[str, images.PushedImage] = {}

    def start_receiver(self, cfg: Path) -> PullReceiver:
        self.rx = PullReceiver(load_config(cfg)).start()
        return self.rx

    def pull_manifest(self, ref: str, user_agent: str = "containerd/1.7.22") -> None:
        """A manifest GET through the cache, as a node's runtime does it."""
        repo, tag = ref.split(":")
        subprocess.run(
            [
                "curl",
                "-sSf",
                "-o",
                "/dev/null",
                "-A",
                user_agent,
                "-H",
                f"Accept: {ACCEPT}",
                f"{self.cache.url}/v2/{repo}/manifests/{tag}",
            ],
            check=True,
            timeout=30,
        )

    def stop(self) -> None:
        rx_stop = self.rx.stop if self.rx else None
        for stop in (
            self.ctl.stop,
            self.cache.stop,
            self.up.stop,
            self.api.stop if self.api else None,
            rx_stop,
        ):
            if stop is not None:
                stop()

    def fill(self) -> "ProxyStack":
        """Five images pulled through the cache, aged, with a pull history:
        team/app:stale (cached 60 days ago, last pulled 40), team/app:hot (cached 60, pulled
        yesterday), team/app:inuse (cached 60, never pulled), team/web:a (cached 20, pulled 10)
        and team/web:b (cached 5, pulled 2); team/web:a and :b share a base layer."""
        now = datetime.now(UTC)
        base = layer(LAYER, 100)
        self.push("team/app", "stale", [layer(LAYER, 1)])
        self.push("team/app", "hot", [layer(LAYER, 2)])
        self.push("team/app", "inuse", [layer(LAYER, 3)])
        self.push("team/web", "a", [base, layer(LAYER, 4)])
        self.push("team/web", "b", [base, layer(LAYER, 5)])
        ages = {
            "team/app:stale": 60,
            "team/app:hot": 60,
            "team/app:inuse": 60,
            "team/web:a": 20,
            "team/web:b": 5,
        }
        for ref, days in ages.items():
            self.pull(ref)
            repo, tag = ref.split(":")
            self.cached_at(repo, tag, now - timedelta(days=days))
        self.pulls(
            {
                "team/app:stale": timedelta(days=40),
                "team/app:hot": timedelta(days=1),
                "team/web:a": timedelta(days=10),
                "team/web:b": timedelta(days=2),
            }
        )
        return self

    # -- the cache -------------------------------------------------------------------
    def pull(self, ref: str) -> None:
        """Pull ``repo:tag`` through the cache with skopeo (the whole image, layers included), and
        wait until the cache has stored every blob (it stores what it streams in the background,
        after the client has its bytes)."""
        out = self.tmp / "pulled"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", f"docker://{self.cache.host}/{ref}", f"dir:{out}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        img = self.pushed.get(ref)
        if img is not None:
            blobs = [img.digest, img.config_digest, *img.layer_digests]
            wait_until(
                lambda: all(self.has_blob(b) for b in blobs), timeout=60, what=f"{ref} stored by the cache"
            )

    def cached_at(self, repo: str, tag: str, when: datetime) -> None:
        """Age what the cache stored for ``repo:tag`` (its revision and tag links)."""
        t = when.timestamp()
        base = Path(self.cache.root) / V2 / repo / "_manifests"
        hexd = self.digests[f"{repo}:{tag}"].split(":")[1]
        for link in (base / "revisions/sha256" / hexd / "link", base / "tags" / tag / "current/link"):
            os.utime(link, (t, t))

    def files(self) -> dict[str, int]:
        """What the cache stores under ``docker/`` (links and blobs; not the scheduler state file
        the registry rewrites every few seconds on its own): key -> bytes."""
        if self.s3 is None:
            return _walk_files(Path(self.cache.root))
        c = _s3_client(self.s3)
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.s3["bucket"], Prefix="docker/"):
            out |= {o["Key"]: o["Size"] for o in page.get("Contents", [])}
        return out

    def linked(self, repo: str, tag: str) -> bool:
        hexd = self.digests[f"{repo}:{tag}"].split(":")[1]
        return f"{V2}/{repo}/_manifests/revisions/sha256/{hexd}/link" in self.files()

    def has_blob(self, digest: str) -> bool:
        hexd = digest.split(":")[1]
        return f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data" in self.files()

    def storage_bytes(self) -> int:
        return sum(self.files().values())

    # -- upstream, history, Kubernetes, config -------------------------------------------
    def push(self, repo: str, tag: str, layers: list[bytes]) -> images.PushedImage:
        img = images.push_image(self.up.url, repo, tag, layers=layers)
        self.digests[f"{repo}:{tag}"] = img.digest
        self.pushed[f"{repo}:{tag}"] = img
        return img

    def pulls(self, pulled: dict[str, timedelta], since: timedelta = timedelta(days=90)) -> None:
        """The pull store: collection since ``since`` ago, the receiver alive, and one pull per
        ``repo:tag`` at ``now - age``."""
        now = datetime.now(UTC)
        (self.tmp / "state").mkdir(exist_ok=True)
        store = PullStore(self.store_url)
        try:
            store.mark_collection_start(NAME, now - since)
            store.heartbeat(now)
            for ref, ago in pulled.items():
                repo, tag = ref.split(":")
                store.record_pull(
                    NAME, repo, self.digests[ref], now - ago, tag=tag, user_agent="containerd/1.7"
                )
        finally:
            store.close()

    def kubernetes(self, in_use: str) -> dict:
        self.api = KubeApiServer({"deployments": [_deployment(f"{self.cache.host}/{in_use}")]})
        kubeconfig = write_kubeconfig(self.tmp / "kubeconfig", {"prod": self.api})
        return {"kubeconfig": str(kubeconfig), "contexts": ["prod"], "failClosed": True}

    def config(self, kube: dict | None = None, **proxy_cache) -> Path:
        entry = {
            "name": NAME,
            "type": "proxy",
            "url": self.cache.url,
            "upstream": self.up.url,
            "proxyCache": {"storage": str(self.cache.root), **proxy_cache}
            if self.s3 is None
            else proxy_cache,
            "reclaim": self.ctl.reclaim_config(),
            "retries": 2,
            "timeout": "20s",
        }
        pulls: dict = {"store": self.store_url}
        if self.events_port is not None:
            token = self.tmp / "pull-token"
            token.write_text(TOKEN + "\n")
            pulls |= {
                "listen": f"127.0.0.1:{self.events_port}",
                "token": f"file:{token}",
                "exclude": {"userAgents": ["regkeeper/*", "skopeo/*"]},
            }
        if self.s3 is not None:
            entry |= {
                "storage": {"type": "s3", "bucket": self.s3["bucket"]},
                "endpoint": self.s3["endpoint"],
                "accessKey": self.s3["access_key"],
                "secretKey": self.s3["secret_key"],
            }
        return write_config(
            self.tmp / "regkeeper.yaml",
            [entry],
            kubernetes=kube,
            pulls=pulls,
            stateDir=str(self.tmp / "state"),
        )


@contextmanager
def filled_stack(tmp: Path) -> Iterator[ProxyStack]:
    """A ``ProxyStack`` filled with its five images, stopped (every process) afterwards: what
    the proxy tests' fixtures yield."""
    s = ProxyStack(tmp)
    try:
        yield s.fill()
    finally:
        s.stop()


def _s3_client(s3: dict):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3.get("region", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


def _walk_files(root: Path) -> dict[str, int]:
    """Files under ``root/docker`` -> bytes, while the cache writes: an upload directory or file
    that vanishes during the walk (the registry moves finished uploads away) is skipped, not an
    error (``os.walk`` ignores a directory gone before it is listed; ``rglob`` raised)."""
    out: dict[str, int] = {}
    for dirpath, _, names in os.walk(root / "docker"):
        for n in names:
            full = os.path.join(dirpath, n)
            try:
                out[os.path.relpath(full, root)] = os.stat(full).st_size
            except FileNotFoundError:
                continue
    return out
