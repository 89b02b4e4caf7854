"""The ``quarantine`` section: off unless a window above 0 is given; bad values name the key."""

from datetime import timedelta

import pytest

from regkeeper.config import ConfigError, parse_config
from regkeeper.context import RunContext

BASE = """\
mirrorRepositories:
- name: local-registry
  type: local
  url: http://127.0.0.1:5000
"""


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "conf.yaml")
    return str(ei.value)


def test_absent_or_zero_is_off():
    assert parse_config(BASE).quarantine is None
    assert RunContext(parse_config(BASE)).quarantine("local-registry") is None
    cfg = parse_config(BASE + "quarantine: {window: 0}\n")
    assert cfg.quarantine is not None and not cfg.quarantine.enabled
    assert cfg.quarantine_namespace() == "regkeeper-quarantine"  # still kept apart
    assert RunContext(cfg).quarantine("local-registry") is None


def test_window_and_namespace():
    cfg = parse_config(BASE + "quarantine: {window: 7d, namespace: held/deletes}\n")
    assert cfg.quarantine is not None and cfg.quarantine.window == timedelta(days=7)
    q = RunContext(cfg).quarantine("local-registry")
    assert q is not None and q.namespace == "held/deletes" and q.run


@pytest.mark.parametrize(
    "section, words",
    [
        ("quarantine: {window: -1d}", ["quarantine.window", "-1d"]),
        ("quarantine: {window: -60}", ["quarantine.window", "negative"]),
        ("quarantine: {window: soon}", ["quarantine.window", "soon"]),
        ("quarantine: {window: 7d, namespace: Bad_Name/}", ["quarantine.namespace", "Bad_Name/"]),
        ("quarantine: {windw: 7d}", ["quarantine", "windw"]),
    ],
)
def test_bad_values_name_the_key(section, words):
    msg = _err(BASE + section + "\n")
    assert "conf.yaml" in msg and all(w in msg for w in words), msg
