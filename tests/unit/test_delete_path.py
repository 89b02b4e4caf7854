"""The one delete path and the one cap, pure parts: reference-depth order from a reference map
(replication's, no inventory), the cap's wording through one function, and that
``delete_manifest`` is called from one module only."""

import re
from pathlib import Path

from regkeeper.policy import check_cap, delete_levels, manifest_references

ROOT = Path(__file__).resolve().parents[2]
D = {k: "sha256:" + k * 64 for k in "abcdefg"}


def test_delete_levels_from_a_reference_map():
    subject, sig, fallback, referrer, index, child = (D[k] for k in "abcdef")
    items = [("r", d) for d in (subject, sig, fallback, referrer, index, child)]
    refs = {
        ("r", sig): manifest_references([], None, [subject.replace(":", "-") + ".sig"]),
        ("r", fallback): manifest_references([referrer], None, [subject.replace(":", "-")]),
        ("r", referrer): manifest_references([], subject),
        ("r", index): manifest_references([child, D["g"]], None),  # g is not planned: ignored
        ("other", subject): {index},
    }  # another repository: ignored
    lv = delete_levels(None, items, refs)
    assert lv[("r", sig)] == lv[("r", fallback)] == lv[("r", index)] == 0
    assert lv[("r", fallback)] < lv[("r", referrer)] < lv[("r", subject)]
    assert lv[("r", index)] < lv[("r", child)]
    assert delete_levels(None, items) == dict.fromkeys(items, 0)  # nothing known: one level


def test_one_cap_wording_for_every_job():
    gc = check_cap(8, 17, 0.4)
    assert gc == (
        "blast-radius cap: the plan deletes more than 40% of the tags of <registry>: 8/17 tags "
        "(47%); nothing was deleted. Re-run with --force (flow parameter force) to override."
    )
    rep = check_cap(
        3,
        10,
        0.2,
        what="rule r -> target eu",
        action="deleteExtraneous would delete",
        key="maxDeleteFraction of replication rule r",
    )
    assert rep.startswith(
        "blast-radius cap: deleteExtraneous would delete more than 20% "
        "(maxDeleteFraction of replication rule r) of the tags of rule r -> target eu: "
        "3/10 tags (30%)"
    )
    assert check_cap(3, 10, 0.3) is None and check_cap(3, 10, 0.2, force=True) is None
    assert check_cap(1, 0, 1.0) is not None and check_cap(0, 0, 0.1) is None


def test_delete_manifest_is_called_from_the_one_delete_path_only():
    calls = []
    for path in sorted((ROOT / "regkeeper").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bdelete_manifest\(", line) and not re.match(r"\s*def delete_manifest\(", line):
                calls.append(f"{path.relative_to(ROOT)}:{n}")
    assert calls and all(c.startswith("regkeeper/prune/delete.py:") for c in calls), calls
