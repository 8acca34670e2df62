"""The postmortem-based eval cases are well formed, split as documented, and their decoys bite."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.evals.harness import CASES, Case, build_view, load_cases

HELDOUT = Path(CASES).parent / "heldout"
KINDS = {
    "bad-deploy",
    "config",
    "dependency",
    "capacity",
    "certificate",
    "migration",
    "external",
    "no-change",
}
SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")


def _postmortem_cases() -> list[tuple[str, Case]]:
    found = [("dev", c) for c in load_cases(CASES) if "source" in c.expected]
    found += [("heldout", c) for c in load_cases(HELDOUT)]
    return found


CASES_BY_SET = _postmortem_cases()


def test_at_least_forty_cases_four_per_kind_and_every_kind_in_both_sets() -> None:
    assert len(CASES_BY_SET) >= 40
    per_kind = Counter(c.expected["kind"] for _, c in CASES_BY_SET)
    assert set(per_kind) == KINDS and min(per_kind.values()) >= 4, per_kind
    for split in ("dev", "heldout"):
        assert {c.expected["kind"] for s, c in CASES_BY_SET if s == split} == KINDS, split
    heldout = sum(1 for s, _ in CASES_BY_SET if s == "heldout")
    assert 0.3 <= heldout / len(CASES_BY_SET) <= 0.5


@pytest.mark.parametrize(("split", "case"), CASES_BY_SET, ids=[f"{s}/{c.name}" for s, c in CASES_BY_SET])
def test_case_cites_its_source_and_names_cause_and_decoy(split: str, case: Case) -> None:
    exp = case.expected
    assert exp["kind"] in KINDS
    assert re.match(r"^https?://\S+$", exp["source"]), exp["source"]
    assert exp["story"].strip() and "\n" not in exp["story"].strip()
    assert exp.get("playbook") == "novel" and exp["top"] and exp["not_top"]
    shas = {c["sha"] for c in case.evidence.get("changes", [])}
    sha_tops = [t for t in exp["top"] if SHA_PREFIX.match(t)]
    for prefix in sha_tops + [t for t in exp["not_top"] if SHA_PREFIX.match(t)]:
        assert any(s.startswith(prefix) for s in shas), f"{prefix} is not a change in the evidence"
    if exp["fix"] == "manual":
        assert sha_tops, "a change-caused case names the change as the top hypothesis"
    else:
        assert exp["fix"] == "none" and not sha_tops and exp.get("summary_lacks")


@pytest.mark.parametrize(("split", "case"), CASES_BY_SET, ids=[f"{s}/{c.name}" for s, c in CASES_BY_SET])
def test_the_closest_change_heuristic_picks_a_decoy(split: str, case: Case) -> None:
    """The change ranked first by closeness and service paths alone is one the case says is wrong."""
    view = build_view(case)
    assert view.evidence is not None
    changes = next(s for s in view.evidence.sections if s.source == "changes").changes
    first = changes[0].sha
    assert any(first.startswith(d) for d in case.expected["not_top"]), (case.name, first)
