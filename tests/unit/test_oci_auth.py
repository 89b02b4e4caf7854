from regkeeper.config import parse_config
from regkeeper.oci import RegistryClient


def test_static_token_resolved_only_when_used(monkeypatch):
    cfg = parse_config(
        "mirrorRepositories:\n- name: a\n  url: http://127.0.0.1:1\n  auth: {token: env:RK_STATIC_TOKEN}\n"
    )
    monkeypatch.delenv("RK_STATIC_TOKEN", raising=False)
    client = RegistryClient.from_config(cfg.registry())  # not resolved yet: no error
    monkeypatch.setenv("RK_STATIC_TOKEN", "stat1c-t0ken")
    assert client._auth_headers("repository:x:pull") == {"Authorization": "Bearer stat1c-t0ken"}
    assert "stat1c" not in repr(client)
