"""``regkeeper demo``: the nightly flow against local registries full of sample images."""

from app.demo.registry import REGISTRY_BIN, DemoRegistry, free_port
from app.demo.run import SNAPSHOT_TEMPLATE, demo, run_demo, write_config, write_snapshot
from app.demo.sample import EXPECTED, SAMPLE, Item, push_sample, sample_tag

__all__ = [
    "EXPECTED",
    "REGISTRY_BIN",
    "SAMPLE",
    "SNAPSHOT_TEMPLATE",
    "DemoRegistry",
    "Item",
    "demo",
    "free_port",
    "push_sample",
    "run_demo",
    "sample_tag",
    "write_config",
    "write_snapshot",
]
