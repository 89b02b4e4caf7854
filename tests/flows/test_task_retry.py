"""THE task retry preset (tasks.common.RETRY): every task that retries uses it, and it retries
only a transient failure (regkeeper.retry.is_transient) that no layer below retried already."""

import importlib
import inspect

import pytest
import requests

from regkeeper.errors import AuthError, RefusedError, RegistryError
from tasks.common import RETRY, retry_transient


class _State:
    def __init__(self, exc: BaseException | None):
        self.exc = exc

    def result(self):
        if self.exc is not None:
            raise self.exc
        return 1


def _exhausted(exc: BaseException) -> BaseException:
    exc.attempts = 3
    return exc


@pytest.mark.parametrize(
    "exc, retried",
    [
        (RegistryError("x", status=503, transient=True), True),
        (RegistryError("x", status=429, transient=True), True),
        (requests.exceptions.ConnectionError("refused"), True),
        (_exhausted(RegistryError("x", status=503, transient=True)), False),  # the transport gave up
        (_exhausted(requests.exceptions.ConnectionError("refused")), False),
        (RegistryError("x", status=500), False),
        (AuthError("x", status=401), False),
        (RefusedError("cap"), False),
        (ValueError("bad config"), False),
        (None, False),
    ],
)
def test_retry_condition(exc, retried):
    assert retry_transient(None, None, _State(exc)) is retried


def test_every_retrying_task_uses_the_one_preset():
    seen = []
    for mod in ("tasks.common", "tasks.prune", "tasks.replicate", "tasks.backup", "tasks.capacity"):
        for name, obj in inspect.getmembers(importlib.import_module(mod)):
            if type(obj).__name__ == "Task" and obj.retries:
                seen.append(name)
                assert obj.retry_condition_fn is retry_transient, name
                assert obj.retries == RETRY["retries"], name
    assert {"scan_batch", "copy_batch", "restore_batch", "count_tags", "pull_latency"} <= set(seen)
