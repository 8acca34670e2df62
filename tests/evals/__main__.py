"""`make eval`: score the investigators on every case and print a table.

The builtin investigator always runs (and the naive baseline beside it, for scale). The LLM
investigator runs too when a model key is configured (SELFHEAL_INVESTIGATION__LLM__API_KEY, or a
settings file via SELFHEAL_CONFIG), against the same recorded evidence.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from tests.evals.harness import INVESTIGATORS, CaseResult, Investigator, load_cases, run


def _llm() -> Investigator | None:
    from selfheal.settings import Settings

    settings = Settings()
    if settings.investigation.llm.api_key is None:
        return None
    try:
        from tests.evals.llm import llm_investigator
    except ImportError as err:
        Console(stderr=True).print(f"LLM investigator unavailable: {err}")
        return None
    return llm_investigator(settings)


def main() -> int:
    cases = load_cases()
    investigators = dict(INVESTIGATORS)
    llm = _llm()
    if llm is not None:
        investigators["llm"] = llm
    results: dict[str, list[CaseResult]] = {name: run(cases, fn, name) for name, fn in investigators.items()}
    table = Table(title=f"Investigator evals ({len(cases)} cases)")
    table.add_column("case")
    for name in results:
        table.add_column(name, justify="right")
    for i, case in enumerate(cases):
        cells = []
        for rs in results.values():
            r = rs[i]
            cells.append(f"[{'green' if r.passed else 'red'}]{r.score:.2f}[/]")
        table.add_row(case.name, *cells)
    totals = []
    for rs in results.values():
        passed = sum(r.passed for r in rs)
        checks = sum(len(r.checks) for r in rs)
        ok = sum(sum(c.ok for c in r.checks) for r in rs)
        totals.append(f"{passed}/{len(rs)} cases, {ok}/{checks} facts")
    table.add_row("[bold]total[/]", *totals)
    console = Console()
    console.print(table)
    if llm is None:
        console.print(
            "LLM investigator not scored: no key configured (SELFHEAL_INVESTIGATION__LLM__API_KEY)."
        )
    for r in results["builtin"]:
        for c in r.checks:
            if not c.ok:
                console.print(f"builtin {r.case}: {c.name} failed ({c.detail})")
    return 0 if all(r.passed for r in results["builtin"]) else 1


if __name__ == "__main__":
    sys.exit(main())
