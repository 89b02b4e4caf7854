"""The demo's sample: which tags it pushes, how old each is, what the nightly run must do to
them (:data:`EXPECTED`), and the pusher that builds the images with regkeeper's own client."""

import datetime as dt
import hashlib
import json
import os
import random
from dataclasses import dataclass

from app.demo.registry import DemoRegistry

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass(frozen=True)
class Item:
    """One tag to push. ``kind``: image | index (amd64+arm64) | alias (another tag's digest) |
    sig (cosign signature of ``of``). ``age``: hours since push."""

    repo: str
    tag: str
    age_hours: float
    kind: str = "image"
    of: str | None = None  # alias / sig: the tag it points at / signs

    @property
    def target(self) -> str:
        """``of``, which an alias or a signature must name."""
        if self.of is None:
            raise ValueError(f"sample {self.repo}:{self.tag} ({self.kind}) names no tag in 'of'")
        return self.of


D = 24.0
SAMPLE: tuple[Item, ...] = (
    # business tier (team-*/**): gc keeps the newest 2 images and anything younger than 30 days
    Item("team-a/app-service", "1.0.0", 120 * D),
    Item("team-a/app-service", "sig-1.0.0", 120 * D, "sig", of="1.0.0"),
    Item("team-a/app-service", "1.1.0", 100 * D),
    Item("team-a/app-service", "1.2.0", 90 * D),  # in use: Deployment prod/app-service (tag)
    Item("team-a/app-service", "1.3.0", 60 * D),  # in use: CronJob batch/nightly-report (digest)
    Item("team-a/app-service", "1.4.0", 5 * D),
    Item("team-a/app-service", "1.5.0", 1 * D),
    Item("team-a/app-service", "latest", 1 * D, "alias", of="1.5.0"),
    Item("team-a/app-service", "sig-1.5.0", 1 * D, "sig", of="1.5.0"),
    Item("team-b/web", "v1", 150 * D, "index"),  # stale multi-arch: deleted with its children
    Item("team-b/web", "v2", 60 * D, "index"),
    Item("team-b/web", "stable", 60 * D, "alias", of="v2"),  # gc protects "stable": v2 stays
    Item("team-b/web", "v3", 2 * D, "index"),
    Item("team-b/web", "v4", 1.0),
    # base tier: kept forever (and gc leaves base/** alone)
    Item("base/alpine", "3.18", 400 * D, "index"),
    Item("base/alpine", "3.19", 200 * D, "index"),  # in use: DaemonSet kube-system/node-agent
    Item("base/alpine", "3.20", 20 * D),
    Item("base/alpine", "latest", 20 * D, "alias", of="3.20"),
    # temp tier (ci/**, tmp/**): expire 72h after push, emptied repositories removed
    Item("ci/build-123", "abc1234", 96),
    Item("ci/build-123", "abc1235", 96),
    Item("ci/build-124", "def5678", 120),
    Item("ci/build-125", "0a1b2c3", 10),  # fresh: kept
    Item("ci/build-126", "pr-7", 96),  # in use: Job ci/integration-pr-7
    Item("tmp/scratch", "test", 80),
)

# What the nightly run does to SAMPLE (checked by tests/flows/test_demo.py, printed by the demo).
EXPECTED = {
    "tags pushed": 24,
    "repositories": 8,
    "gc": {
        "tags deleted": 4,
        "in use (kept)": 2,
        "deleted": [
            "team-a/app-service:1.0.0",
            "team-a/app-service:1.1.0",
            "team-a/app-service:sig-1.0.0",
            "team-b/web:v1",
        ],
    },
    "expire": {
        "tags deleted": 4,
        "expired but in use": 2,
        "repositories removed": 3,
        "deleted": [
            "ci/build-123:abc1234",
            "ci/build-123:abc1235",
            "ci/build-124:def5678",
            "tmp/scratch:test",
        ],
    },
    "replicated repositories": ["base/alpine", "team-a/app-service", "team-b/web"],
}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canon(obj) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pusher:
    """Sample images through regkeeper's own client (upload_blob, put_manifest)."""

    def __init__(self, client, now: dt.datetime):
        self.c = client
        self.now = now
        self.base_layers: dict[str, bytes] = {}  # arch -> shared "distro" layer
        self.digests: dict[tuple[str, str], str] = {}  # (repo, tag) -> digest
        self.raw: dict[str, tuple[bytes, str]] = {}  # digest -> (bytes, media type)

    def blob(self, repo: str, data: bytes) -> dict:
        d = _digest(data)
        if self.c.head_blob(repo, d) is None:
            self.c.upload_blob(repo, d, data)
        return {"digest": d, "size": len(data)}

    def put(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        d = self.c.put_manifest(repo, ref, raw, media_type)
        self.raw[d] = (raw, media_type)
        return d

    def image(
        self, repo: str, seed: str, created: dt.datetime, arch: str = "amd64", oci: bool = False
    ) -> tuple[bytes, str]:
        rng = random.Random(seed)
        if arch not in self.base_layers:
            self.base_layers[arch] = random.Random(f"base/{arch}").randbytes(96 * 1024)
        layers = [
            self.blob(repo, self.base_layers[arch]),
            self.blob(repo, rng.randbytes(rng.randint(16, 48) * 1024)),
        ]
        lmt = OCI_LAYER if oci else DOCKER_LAYER
        config = self.blob(
            repo,
            _canon(
                {
                    "architecture": arch,
                    "os": "linux",
                    "created": _rfc3339(created),
                    "config": {"Labels": {"org.opencontainers.image.source": f"regkeeper-demo/{repo}"}},
                    "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
                }
            ),
        )
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, **config},
            "layers": [{"mediaType": lmt, **x} for x in layers],
        }
        return _canon(manifest), media_type

    def index(self, repo: str, tag: str, created: dt.datetime) -> tuple[bytes, str]:
        """A two-platform OCI index; its child images are pushed first, by digest only."""
        children = []
        for arch in ("amd64", "arm64"):
            craw, cmt = self.image(repo, f"{repo}:{tag}/{arch}", created, arch, oci=True)
            cd = self.put(repo, _digest(craw), craw, cmt)  # children by digest only
            children.append(
                {
                    "mediaType": cmt,
                    "digest": cd,
                    "size": len(craw),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        return _canon(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": children,
                "annotations": {"org.opencontainers.image.created": _rfc3339(created)},
            }
        ), OCI_INDEX

    def signature(self, repo: str, subject: str, created: dt.datetime) -> tuple[bytes, str]:
        """A cosign-style signature of ``subject``: a simple-signing payload layer and the
        signature annotation (the tag schema ``sha256-<hex>.sig`` is the caller's)."""
        payload = self.blob(
            repo,
            _canon(
                {
                    "critical": {
                        "identity": {"docker-reference": f"{self.c.host}/{repo}"},
                        "image": {"docker-manifest-digest": subject},
                        "type": "cosign container image signature",
                    },
                    "optional": None,
                }
            ),
        )
        config = self.blob(
            repo,
            _canon(
                {
                    "architecture": "",
                    "os": "",
                    "created": _rfc3339(created),
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [payload["digest"]]},
                }
            ),
        )
        sig = hashlib.sha512(f"demo-signature {subject}".encode()).hexdigest()
        return _canon(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config},
                "layers": [
                    {
                        "mediaType": COSIGN_LAYER,
                        **payload,
                        "annotations": {"dev.cosignproject.cosign/signature": sig},
                    }
                ],
            }
        ), OCI_MANIFEST

    def push(self, it: Item) -> str:
        created = self.now - dt.timedelta(hours=it.age_hours)
        repo = it.repo
        if it.kind == "image":
            raw, mt = self.image(repo, f"{repo}:{it.tag}", created)
        elif it.kind == "index":
            raw, mt = self.index(repo, it.tag, created)
        elif it.kind == "alias":
            raw, mt = self.raw[self.digests[(repo, it.target)]]
        elif it.kind == "sig":
            subject = self.digests[(repo, it.target)]
            raw, mt = self.signature(repo, subject, created)
            tag = subject.replace(":", "-") + ".sig"
            d = self.put(repo, tag, raw, mt)
            self.digests[(repo, it.tag)] = d
            return tag
        else:
            raise ValueError(f"unknown sample kind {it.kind!r}")
        self.digests[(repo, it.tag)] = self.put(repo, it.tag, raw, mt)
        return it.tag


def push_sample(reg: DemoRegistry, now: dt.datetime | None = None) -> dict:
    """Push :data:`SAMPLE` and backdate every tag. Returns {(repo, sample tag): (registry tag, digest)}."""
    from regkeeper.oci import RegistryClient

    now = now or dt.datetime.now(dt.UTC)
    out = {}
    with RegistryClient(reg.name, reg.url, verify=True, retries=2) as client:
        p = Pusher(client, now)
        for it in SAMPLE:
            tag = p.push(it)
            out[(it.repo, it.tag)] = (tag, p.digests[(it.repo, it.tag)])
            t = (now - dt.timedelta(hours=it.age_hours)).timestamp()
            os.utime(reg.tag_link(it.repo, tag), (t, t))
    return out


def sample_tag(pushed: dict, repo: str, tag: str) -> str:
    """The registry tag of a sample entry (``sig-1.0.0`` -> ``sha256-<hex>.sig``)."""
    return pushed[(repo, tag)][0]
