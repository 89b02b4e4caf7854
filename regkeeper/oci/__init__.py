"""The OCI Distribution client: one RegistryClient per registry, shared by every job.

mediatypes.py  manifest/config/layer media types and the Accept header (the distribution quirk)
manifest.py    Descriptor, Manifest, ManifestHead, parse_manifest
auth.py        WWW-Authenticate challenges, bearer tokens cached per scope, basic, static token
errormap.py    failed calls -> RegistryError naming registry, method + path, repository, status
transport.py   session, timeouts, TLS, in-flight bound, the request loop through regkeeper.retry,
               the fast manifest HEAD
blobs.py       blob reads: HEAD, GET in memory (digest-checked), streamed GET, image config
client.py      RegistryClient: catalog, tags, manifests, uploads, DELETE, mount (+ blobs.py)
transfer.py    the ONE blob copy (HEAD -> mount -> upload, the 202 quirk, cancel, restarts)
"""

from .auth import RegistryAuth, parse_challenge, scope_key
from .client import MAX_MANIFEST_BYTES, RegistryClient
from .errormap import Call
from .manifest import (
    CREATED_ANNOTATION,
    Descriptor,
    Manifest,
    ManifestHead,
    ManifestKind,
    manifest_from_doc,
    parse_manifest,
)
from .mediatypes import (
    ACCEPT_MANIFESTS,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    IMAGE_CONFIG_TYPES,
    IMAGE_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .transfer import (
    MONOLITHIC_MAX,
    BlobTransfer,
    BytesSource,
    RegistrySource,
    Transferred,
)
from .transport import RETRIED_METHODS, RegistryTransport
from .uploads import DEFAULT_CHUNK

__all__ = [
    "ACCEPT_MANIFESTS",
    "CREATED_ANNOTATION",
    "DEFAULT_CHUNK",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "IMAGE_CONFIG_TYPES",
    "IMAGE_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "RETRIED_METHODS",
    "Call",
    "BlobTransfer",
    "BytesSource",
    "MONOLITHIC_MAX",
    "RegistrySource",
    "Transferred",
    "Descriptor",
    "Manifest",
    "ManifestHead",
    "ManifestKind",
    "RegistryAuth",
    "RegistryClient",
    "RegistryTransport",
    "manifest_from_doc",
    "parse_challenge",
    "parse_manifest",
    "scope_key",
]
