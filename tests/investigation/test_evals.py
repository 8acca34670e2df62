"""The builtin investigator's eval score is part of `make test`; the decoys must bite."""

from __future__ import annotations

import subprocess
import sys

from tests.evals.harness import builtin, load_cases, naive, run
from tests.support.library import needs_full_library


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


@needs_full_library  # the evals match with the real library
def test_make_eval_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.evals"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "Investigator evals" in out.stdout and "builtin" in out.stdout and "naive" in out.stdout
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
    assert len(fake.requests) == len(load_cases()), "one model call per case, over HTTP"
