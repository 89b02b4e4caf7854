import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session", autouse=True)
def _flows_on_the_session_server(prefect_harness):
    """Every flow test runs against the session's one Prefect server (tests/conftest.py
    ``prefect_harness``), the server the CLI subprocesses use too."""
    yield
