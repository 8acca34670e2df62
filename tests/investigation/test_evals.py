"""The builtin investigator's eval score is part of `make test`; the decoys must bite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.evals.__main__ import calibration
from tests.evals.harness import (
    CASES,
    KINDS,
    CaseResult,
    Check,
    builtin,
    closest,
    load_case,
    load_cases,
    load_sets,
    naive,
    run,
)
from tests.support.library import needs_full_library

#: The four failures issue 15 lists: the "closest change" heuristic blames the decoy in each.
READS_THE_EVIDENCE = (
    "novel-docs-change-vs-expired-certificate",
    "novel-column-rename-vs-later-css-change",
    "novel-checkout-route-vs-closer-search-change",
    "novel-upstream-named-in-log-vs-readme-typo",
)


def test_there_are_enough_cases_with_decoys_and_novel_ones() -> None:
    cases = load_cases()
    assert len(cases) >= 20
    assert sum(1 for c in cases if c.expected.get("not_top") or c.expected.get("summary_lacks")) >= 8
    assert sum(1 for c in cases if c.expected.get("playbook", "novel") == "novel") >= 8


@needs_full_library  # the evals match with the real library
def test_builtin_investigator_passes_every_case() -> None:
    results = run(load_cases(), builtin)
    failed = {r.case: [c.name for c in r.checks if not c.ok] for r in results if not r.passed}
    assert not failed, failed


@needs_full_library  # the evals match with the real library
def test_a_loudness_driven_investigator_falls_for_the_decoys() -> None:
    results = {r.case: r for r in run(load_cases(), naive, "naive")}
    fooled = [
        name
        for name, r in results.items()
        if any(c.name.startswith("does not blame") and not c.ok for c in r.checks)
    ]
    assert len(fooled) >= 4, fooled
    assert sum(r.passed for r in results.values()) < len(results) // 2


def test_every_case_has_a_kind_and_the_sets_are_loaded_apart(tmp_path: Path) -> None:
    sets = load_sets()
    assert {c.kind for c in sets["dev"]} <= set(KINDS)
    assert all(c.set == "dev" for c in sets["dev"]) and all(c.set == "held-out" for c in sets["held-out"])
    assert not {c.name for c in sets["dev"]} & {c.name for c in sets["held-out"]}
    case = tmp_path / "case"
    case.mkdir()
    for name in ("alert.json", "evidence.yaml"):
        (case / name).write_text((CASES / READS_THE_EVIDENCE[0] / name).read_text())
    (case / "expected.yaml").write_text("kind: outage\nplaybook: novel\n")
    with pytest.raises(ValueError, match="kind 'outage' is not one of"):
        load_case(case)


def test_the_closest_change_baseline_fails_where_the_evidence_must_be_read() -> None:
    cases = [c for c in load_cases() if c.name in READS_THE_EVIDENCE]
    assert len(cases) == 4
    for r in run(cases, closest, "closest"):
        blamed = [c.name for c in r.checks if c.name.startswith(("top ", "does not blame")) and not c.ok]
        assert blamed, f"{r.case}: the closest-change heuristic should fail it"
    assert all(r.passed for r in run(cases, builtin))


def test_calibration_counts_right_top_hypotheses_per_confidence_bucket() -> None:
    from models.investigation import Hypothesis, Investigation

    def result(confidence: float, right: bool) -> CaseResult:
        inv = Investigation(
            investigator="x", summary="s", hypotheses=[Hypothesis(title="t", confidence=confidence)]
        )
        return CaseResult("c", "x", [Check("top mentions 'a'", right), Check("states 'b'", False)], inv)

    rows = calibration({"x": [result(0.9, True), result(0.85, False), result(0.3, True), result(0.95, True)]})
    assert rows["x"] == [(0, 0), (1, 1), (0, 0), (0, 0), (2, 3)]


def test_make_eval_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.evals"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "Investigator evals, dev set" in out.stdout and "closest" in out.stdout, out.stdout
    assert "Per kind, dev set" in out.stdout and "Calibration" in out.stdout
    n = len(load_cases())
    assert f"{n}/{n} cases" in out.stdout, out.stdout


@needs_full_library  # the evals match with the real library
def test_the_llm_investigator_is_scored_on_the_same_cases_when_configured() -> None:
    """`make eval` scores the LLM column over the real openai wire protocol (here the fake server)."""
    from tests.support.openai_fake import OUTPUT, FakeOpenAI

    answer = {"summary": "scripted", "hypotheses": [{"title": "scripted answer", "confidence": 0.5}]}
    with FakeOpenAI([[(OUTPUT, answer)]], api_key="sk-eval", model="fake-gpt") as fake:
        env = {
            "PATH": "/usr/bin:/bin",
            "SELFHEAL_INVESTIGATION__LLM__BASE_URL": fake.url,
            "SELFHEAL_INVESTIGATION__LLM__API_KEY": "sk-eval",
            "SELFHEAL_INVESTIGATION__LLM__MODEL": "fake-gpt",
        }
        out = subprocess.run(
            [sys.executable, "-m", "tests.evals"], capture_output=True, text=True, timeout=300, env=env
        )
    assert out.returncode == 0, out.stderr
    assert "not scored" not in out.stdout and "llm" in out.stdout, out.stdout
    n = sum(len(cases) for cases in load_sets().values())
    assert len(fake.requests) == n, "one model call per case, over HTTP"
