"""THE retry decision (regkeeper.retry): what is transient, how long to wait, the loop."""

import http.client
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import urllib3

from regkeeper.errors import AuthError, DigestMismatchError, NotFoundError, RegistryError
from regkeeper.retry import (
    TRANSIENT_STATUSES,
    RetryPolicy,
    is_transient,
    parse_retry_after,
    retry_after_of,
    run_with_retries,
    transient_reason,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _json_error() -> json.JSONDecodeError:
    try:
        json.loads('{"repositories": ["a", "b"')
    except json.JSONDecodeError as e:
        return e
    raise AssertionError


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses(status):
    assert is_transient(status=status)
    assert is_transient(RegistryError("x", status=status))
    assert status in TRANSIENT_STATUSES


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 405, 409, 500, 501])
def test_permanent_statuses(status):
    assert not is_transient(status=status)
    assert not is_transient(RegistryError("x", status=status))


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ConnectTimeout("connect timeout"),
        requests.exceptions.ReadTimeout("read timeout"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        requests.exceptions.ContentDecodingError("bad gzip"),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3.exceptions.IncompleteRead(10, 20),
        urllib3.exceptions.ReadTimeoutError(None, "/v2/", "read timed out"),
        urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"),
        urllib3.exceptions.MaxRetryError(
            None, "/v2/", urllib3.exceptions.NewConnectionError(None, "refused")
        ),
        http.client.IncompleteRead(b"abc", 10),
        http.client.RemoteDisconnected("closed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        _json_error(),
        requests.exceptions.JSONDecodeError("Expecting value", "x", 0),
        DigestMismatchError("cut in transit", transient=True),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_exceptions(exc):
    assert is_transient(exc), exc
    assert transient_reason(exc)


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.MaxRetryError(None, "/v2/", urllib3.exceptions.SSLError("bad cert")),
        requests.exceptions.InvalidURL("no host"),
        ValueError("x"),
        KeyError("repositories"),
        AttributeError("'list' object has no attribute 'get'"),
        RegistryError("upload started without a Location header"),
        AuthError("x", status=401),
        NotFoundError("x", status=404),
        DigestMismatchError("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_exceptions(exc):
    assert not is_transient(exc), exc
    assert transient_reason(exc) is None


def test_status_and_retry_after_from_foreign_exceptions():
    """kubernetes ApiException and requests HTTPError carry status/headers differently."""
    from kubernetes.client.exceptions import ApiException

    api = ApiException(status=503, reason="Service Unavailable")
    api.headers = {"Retry-After": "7"}
    assert is_transient(api) and retry_after_of(api) == 7
    assert not is_transient(ApiException(status=403, reason="Forbidden"))
    resp = requests.Response()
    resp.status_code = 429
    resp.headers["Retry-After"] = "3"
    err = requests.exceptions.HTTPError("429", response=resp)
    assert is_transient(err) and transient_reason(err) == "HTTP 429 (rate limited)"
    assert retry_after_of(err) == 3
    assert retry_after_of(RegistryError("x", status=429, retry_after=2.5)) == 2.5


def test_reasons_are_short_and_named():
    assert transient_reason(status=503) == "HTTP 503"
    assert transient_reason(_json_error()).startswith("response is not valid JSON (")
    why = transient_reason(
        requests.exceptions.ChunkedEncodingError(
            urllib3.exceptions.ProtocolError(
                "Connection broken: IncompleteRead(14 bytes read, 15 more expected)",
                urllib3.exceptions.IncompleteRead(14, 15),
            )
        )
    )
    assert why == (
        "connection broke while reading the response (ProtocolError: Connection broken: "
        "IncompleteRead(14 bytes read, 15 more expected))"
    )


# ---------------------------------------------------------------- Retry-After and backoff


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(2) == 2.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=30), usegmt=True), now=NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=30), usegmt=True), now=NOW) == 0.0
    assert parse_retry_after("Fri, 07 Mar 2025 10:00:00 GMT", now=NOW) == pytest.approx(6 * 86400 - 7200)
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None


def test_delay_honours_retry_after_capped():
    p = RetryPolicy(attempts=4, base=0.5, cap=10)
    assert p.delay(1, retry_after=3) == 3
    assert p.delay(3, retry_after=0) == 0
    assert p.delay(1, retry_after=3600) == 10  # capped
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert p.delay(1, retry_after=parse_retry_after(when)) == 10


def test_delay_full_jitter_bounds_and_cap():
    p = RetryPolicy(attempts=10, base=0.5, cap=4)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        assert p.delay(attempt, rand=lambda: 1.0) == ceiling
        assert p.delay(attempt, rand=lambda: 0.0) == 0.0
        samples = [p.delay(attempt) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in samples)
        assert max(samples) > ceiling / 2  # spread over the interval, not constant
        assert len(set(samples)) > 100


def test_policy_from_configured_retries():
    p = RetryPolicy.from_retries(5, 0.2)
    assert p.attempts == 6 and p.base == 0.2
    assert RetryPolicy.from_retries(0).attempts == 1


# ---------------------------------------------------------------- the loop


def _flaky(errors, result="ok"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


def test_loop_retries_transient_then_succeeds(caplog):
    fn, calls = _flaky([requests.exceptions.ChunkedEncodingError("cut"), _json_error()])
    seen, slept = [], []
    with caplog.at_level(logging.WARNING, logger="regkeeper.retry"):
        got = run_with_retries(
            fn,
            RetryPolicy(attempts=3, base=0.01),
            "registry 'r1': GET /v2/_catalog",
            lambda e, why, n, d: seen.append((type(e).__name__, n)),
            sleep=slept.append,
        )
    assert got == "ok" and len(calls) == 3
    assert seen == [("ChunkedEncodingError", 1), ("JSONDecodeError", 2)] and len(slept) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "regkeeper.retry"]
    assert len(lines) == 2
    assert lines[0].startswith("registry 'r1': GET /v2/_catalog: connection broke while reading")
    assert "attempt 1/3" in lines[0] and "attempt 2/3" in lines[1] and "not valid JSON" in lines[1]


def test_loop_gives_up_with_attempts_on_the_exception():
    fn, calls = _flaky([RegistryError("x", status=503)] * 5)
    with pytest.raises(RegistryError) as ei:
        run_with_retries(fn, RetryPolicy(attempts=3, base=0), sleep=lambda s: None)
    assert len(calls) == 3 and ei.value.attempts == 3
    assert "after 3 attempts" in str(ei.value)
    fn, calls = _flaky([requests.exceptions.ConnectionError("refused")] * 5)
    with pytest.raises(requests.exceptions.ConnectionError) as ei:
        run_with_retries(fn, RetryPolicy(attempts=2, base=0), sleep=lambda s: None)
    assert len(calls) == 2 and ei.value.attempts == 2


def test_loop_raises_permanent_at_once_and_does_not_retry_an_exhausted_inner_loop():
    fn, calls = _flaky([AuthError("denied", status=403)])
    with pytest.raises(AuthError) as ei:
        run_with_retries(fn, RetryPolicy(attempts=5, base=0), sleep=lambda s: None)
    assert len(calls) == 1 and ei.value.attempts is None
    inner = RegistryError("token service", status=503, attempts=3)
    fn, calls = _flaky([inner] * 3)
    with pytest.raises(RegistryError):
        run_with_retries(fn, RetryPolicy(attempts=5, base=0), sleep=lambda s: None)
    assert len(calls) == 1


def test_loop_waits_what_retry_after_says():
    fn, _ = _flaky([RegistryError("slow down", status=429, retry_after=2), RegistryError("x", status=503)])
    slept = []
    run_with_retries(fn, RetryPolicy(attempts=3, base=0.001, cap=30), sleep=slept.append)
    assert slept[0] == 2 and slept[1] <= 0.002
