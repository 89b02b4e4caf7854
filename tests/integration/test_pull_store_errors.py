"""A database error in the pull store reaches the user named by the store (URL, password
redacted), never as the driver's bare exception; on SQLite and PostgreSQL alike."""

import pytest

from regkeeper.errors import RegkeeperError
from regkeeper.pulls.store import PullStore


def _drop_pull_days(store: PullStore) -> None:
    with store._tx() as cur:
        cur.execute("DROP TABLE pull_days")


def test_a_failing_query_is_named_by_the_store(pull_store_url):
    store = PullStore(pull_store_url)
    try:
        _drop_pull_days(store)
        with pytest.raises(RegkeeperError) as err:
            store.pull_days("r")
        msg = str(err.value)
        assert msg.startswith("pull store "), msg
        assert "pull_days" in msg, msg
        assert type(err.value) is RegkeeperError and "\n" not in msg
        # the transaction was rolled back and the lock released: the store still answers
        assert store.rows("r") == []
    finally:
        store.close()


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    bad = tmp_path / "pulls.sqlite"
    bad.write_bytes(b"not a database at all, just some bytes" * 100)
    with pytest.raises(RegkeeperError) as err:
        PullStore(f"sqlite:///{bad}")
    assert str(bad) in str(err.value)


def test_a_postgres_password_never_shows_in_a_query_error(postgres_server):
    # the test server trusts loopback, so any password is accepted: it must still never show
    url = postgres_server.new_database().replace("regkeeper@", "regkeeper:s3cr3t-pw@")
    store = PullStore(url)
    try:
        _drop_pull_days(store)
        with pytest.raises(RegkeeperError) as err:
            store.pull_days("r")
    finally:
        store.close()
    msg = str(err.value)
    assert msg.startswith("pull store postgresql://127.0.0.1:") and "pull_days" in msg, msg
    assert "s3cr3t-pw" not in msg


def test_a_postgres_that_does_not_answer_is_one_line_without_the_password(dead_port):
    """libpq's connection error spans lines ("Is the server running ...?"): the user's last
    line must be the whole story, password redacted."""
    url = f"postgresql://regkeeper:s3cr3t-pw@127.0.0.1:{dead_port}/pulls"
    with pytest.raises(RegkeeperError) as err:
        PullStore(url)
    msg = str(err.value)
    assert msg.startswith("pull store postgresql://127.0.0.1:") and "cannot connect" in msg, msg
    assert "\n" not in msg and "Connection refused" in msg, msg
    assert "s3cr3t-pw" not in msg and type(err.value) is RegkeeperError
