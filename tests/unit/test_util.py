"""regkeeper.util.succeeded: the results of bounded_map for a caller that stops at the first
failure (in input order), as the loops it replaced did."""

import pytest

from regkeeper.util import bounded_map, succeeded


def _tenfold_failing_on_3_and_5(x: int) -> int:
    if x in (3, 5):
        raise ValueError(f"bad {x}")
    return x * 10


def test_yields_results_in_input_order_then_raises_the_first_failure():
    results = bounded_map(_tenfold_failing_on_3_and_5, [1, 2, 3, 4, 5], 3)
    seen = []
    with pytest.raises(ValueError, match="bad 3"):
        for item, res in succeeded(results):
            seen.append((item, res))
    assert seen == [(1, 10), (2, 20)]  # nothing after the first failure


def test_a_none_result_is_a_result():
    assert list(succeeded(bounded_map(lambda x: None, ["a", "b"], 2))) == [("a", None), ("b", None)]


def test_every_result_when_nothing_fails():
    assert dict(succeeded(bounded_map(lambda x: x * 10, [1, 2, 4], 2))) == {1: 10, 2: 20, 4: 40}
