"""Media types: manifests, image configs, layers, and the Accept header every manifest read sends.

The distribution quirk: without an Accept header that lists all four manifest media types,
CNCF distribution (and registries built on it) converts what it serves: a manifest list is
answered with one platform's manifest and a schema2 manifest may be rewritten to schema1, so
the digest the client sees is not the stored one; an OCI manifest or index it cannot convert
answers 404 (manifest unknown). Every manifest GET and HEAD therefore sends ``ACCEPT_MANIFESTS``.
"""

# manifests, in the order the registry is asked for them (Accept header)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPES = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
INDEX_MEDIA_TYPES = (DOCKER_LIST, OCI_INDEX)
IMAGE_MEDIA_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

# Docker schema1 (deprecated): recognised only to refuse it clearly
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# image configs: a manifest whose config is one of these is an image, anything else an artifact
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)
OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # the config of most OCI artifacts

# layers
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYERS = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
FOREIGN_LAYER_TYPES = (DOCKER_FOREIGN_LAYER,) + OCI_NONDISTRIBUTABLE_LAYERS
