"""The fault proxy's random mode decides reproducibly, within its cap and its filters
(tests/support/faultrate.py; pure: no proxy, no network)."""

import pytest

from tests.support.faultrate import DEFAULT_WEIGHTS, FaultRate, request_key


def decisions(rate: FaultRate, calls) -> list:
    return [rate.decide(m, p) for m, p in calls]


def test_request_key_drops_the_query_and_folds_upload_sessions():
    assert request_key("get", "/v2/_catalog?n=100") == "GET /v2/_catalog"
    assert request_key("PATCH", "/v2/a/b/blobs/uploads/1f2e-33?_state=xyz") == "PATCH /v2/a/b/blobs/uploads/"
    assert request_key("PUT", "/v2/a/blobs/uploads/9?digest=sha256:1") == "PUT /v2/a/blobs/uploads/"
    assert request_key("POST", "/v2/a/blobs/uploads/") == "POST /v2/a/blobs/uploads/"


def per_request(calls, got) -> dict:
    out: dict = {}
    for call, d in zip(calls, got, strict=True):
        out.setdefault(call, []).append(d)
    return out


def test_same_seed_same_faults_whatever_the_interleaving():
    a = [("GET", f"/v2/r{i}/manifests/t{j}") for i in range(20) for j in range(5)] * 3
    b = [("HEAD", f"/v2/r{i}/blobs/sha256:{j}") for i in range(20) for j in range(5)] * 3
    r1, r2 = FaultRate(0.3, seed=7), FaultRate(0.3, seed=7)
    in_order = a + b
    mixed = [x for pair in zip(b, a, strict=True) for x in pair]  # the same requests, interleaved
    got1, got2 = decisions(r1, in_order), decisions(r2, mixed)
    assert per_request(in_order, got1) == per_request(mixed, got2)  # each request's decisions
    assert r1.injected == r2.injected and r1.total > 0
    assert decisions(FaultRate(0.3, seed=8), in_order) != got1  # another seed, other faults


def test_never_more_faults_in_a_row_than_the_cap():
    rate = FaultRate(1.0, seed=1, max_in_row=2)
    got = decisions(rate, [("GET", "/v2/x/tags/list")] * 9)
    assert [g is not None for g in got] == [True, True, False] * 3
    assert rate.total == 6 and rate.capped == 3 and rate.seen == 9
    # another request has its own count
    assert rate.decide("GET", "/v2/y/tags/list") is not None


def test_kinds_are_drawn_by_weight_and_counted():
    rate = FaultRate(1.0, seed=3, weights={"503": 3, "reset": 1}, max_in_row=1000)
    got = decisions(rate, [("GET", f"/v2/r/manifests/{i}") for i in range(400)])
    assert set(got) == {"503", "reset"}
    assert sum(rate.injected.values()) == 400 and 2 * rate.injected["reset"] < rate.injected["503"]
    assert {k for k, _ in FaultRate(0.5).weights} == set(DEFAULT_WEIGHTS)  # the default set


def test_filters_and_zero_rate():
    rate = FaultRate(1.0, method="GET", path_regex=r"/manifests/")
    assert rate.decide("HEAD", "/v2/r/manifests/t") is None
    assert rate.decide("GET", "/v2/r/blobs/sha256:1") is None
    assert rate.decide("GET", "/v2/r/manifests/t") is not None
    zero = FaultRate(0.0, seed=1)
    assert decisions(zero, [("GET", f"/v2/r/manifests/{i}") for i in range(200)]) == [None] * 200


@pytest.mark.parametrize(
    "kw",
    [
        dict(p=1.5),
        dict(p=0.1, weights={"teleport": 1}),
        dict(p=0.1, weights={"503": 0}),
        dict(p=0.1, max_in_row=0),
        dict(p=0.1, part=1.0),
    ],
)
def test_bad_options_are_refused(kw):
    with pytest.raises(ValueError):
        FaultRate(**kw)


def test_chunks_of_uploads_into_one_repository_share_a_streak_until_a_blob_finishes():
    """PATCH is never retried alone (a failed chunk restarts the whole blob): after the cap,
    every PATCH into that repository goes through until an upload's final PUT does."""
    rate = FaultRate(1.0, seed=1, max_in_row=2, weights={"503": 1})
    patch = ("PATCH", "/v2/r/blobs/uploads/{}?_state=x")
    got = [rate.decide(patch[0], patch[1].format(i)) for i in range(6)]
    assert got == ["503", "503", None, None, None, None]  # chunks of the third start: all through
    assert rate.decide("PATCH", "/v2/other/blobs/uploads/1") == "503"  # another repository
    assert rate.decide("PUT", "/v2/r/blobs/uploads/9?digest=sha256:1") == "503"  # retried alone
    assert rate.decide("PUT", "/v2/r/blobs/uploads/9?digest=sha256:1") == "503"
    assert rate.decide("PUT", "/v2/r/blobs/uploads/9?digest=sha256:1") is None  # finished
    assert rate.decide(patch[0], patch[1].format(7)) == "503"  # a new streak
