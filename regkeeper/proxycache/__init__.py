"""Pull-through caches (``type: proxy``): what the cache holds, and its eviction (a proxy
registry's gc).

- ``inventory``: repositories, images (root manifests with their children and blobs), tags and
  bytes, read from the cache's storage (the API lists the upstream's tags, not the cache's).
- ``evict``: the plan: in use (kept), ``proxyCache.pulledWithin``, ``proxyCache.maxBytes``
  (least recently used first), each decision naming its rule.
- ``run``: plan, and eviction inside the one reclaim window (``prune.reclaim``): revision and
  tag links removed, then garbage-collect frees the blobs; verify from storage.
- ``report``: the run report through the one report writer.
"""

from .evict import EvictionPlan, plan_eviction
from .inventory import CacheImage, CacheInventory, read_cache
from .report import build_report
from .run import CacheVerify, UnlinkResult, evict, plan_cache, unlink, verify_cache

__all__ = [
    "CacheImage",
    "CacheInventory",
    "CacheVerify",
    "EvictionPlan",
    "UnlinkResult",
    "build_report",
    "evict",
    "plan_cache",
    "plan_eviction",
    "read_cache",
    "unlink",
    "verify_cache",
]
