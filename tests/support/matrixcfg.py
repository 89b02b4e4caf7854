"""The registry matrix as regkeeper sees it in job tests: a registry entry for each kind (storage
access on a filesystem or S3, a reclaim command that runs the registry's own garbage-collect), and
checks of what the storage itself holds and whether an image is whole over the API."""

import json
import random

import boto3
import requests
from botocore.config import Config

from tests.support import images
from tests.support.rkconfig import RegistryControl

UNIQUE = 300_000  # bytes per unique layer: the link files' overhead stays far below 5% of it


def layer(seed: int, n: int = UNIQUE) -> bytes:
    return random.Random(seed).randbytes(n)


def _s3(reg):
    s3 = reg.server.s3
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3.get("region", "us-east-1"),
        verify=False,
        config=Config(connect_timeout=5, read_timeout=30, s3={"addressing_style": "path"}),
    )


def matrix_entry(reg, ctl: RegistryControl | None) -> dict:
    e: dict = {"name": "m", "url": reg.url, "retries": 3, "timeout": "20s"}
    kind = reg.capabilities.storage_kind
    if kind == "filesystem":
        e["storage"] = {"type": "directory", "path": str(reg.root)}
    elif kind == "s3":
        s3 = reg.server.s3
        e.update(
            type="s3",
            endpoint=s3["endpoint"],
            accessKey=s3["access_key"],
            secretKey=s3["secret_key"],
            bucket=s3["bucket"],
            region=s3.get("region", "us-east-1"),
        )
    if ctl is not None:
        e["reclaim"] = {
            **ctl.reclaim_config(),
            # the registry's own binary and config; the S3 driver must not see the sandbox's CA bundle
            "garbageCollect": [
                "env",
                "-u",
                "AWS_CA_BUNDLE",
                reg.server.binary,
                "garbage-collect",
                str(reg.config_path),
            ],
        }
    return e


def blob_stored(reg, digest: str) -> bool:
    kind = reg.capabilities.storage_kind
    if kind == "filesystem":
        return reg.blob_path(digest).exists()
    hexd = digest.split(":")[1]
    key = f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
    found = _s3(reg).list_objects_v2(Bucket=reg.server.s3["bucket"], Prefix=key)
    return found.get("KeyCount", 0) > 0


def whole(reg, repo: str, tag: str) -> bool:
    m = images.head_manifest(reg.url, repo, tag)
    if m is None:
        return False
    raw, _, _ = images.get_manifest(reg.url, repo, tag)
    doc = json.loads(raw)
    blobs = [doc["config"]["digest"]] + [x["digest"] for x in doc["layers"]]
    return all(blob_answers(reg, repo, d) for d in blobs)


def blob_answers(reg, repo: str, digest: str) -> bool:
    # distribution on S3 answers a blob GET with a redirect to the bucket: followed
    with requests.get(f"{reg.url}/v2/{repo}/blobs/{digest}", timeout=10, verify=False, stream=True) as r:
        return r.status_code == 200
