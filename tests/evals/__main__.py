"""`make eval`: score the investigators on every case and print the tables.

Investigators: the builtin one, the "closest change" baseline (the change closest before the
onset that touches the service's paths, else nothing: the heuristic the builtin one must beat)
and the LLM investigator when a model key is configured (SELFHEAL_INVESTIGATION__LLM__API_KEY, or
a settings file via SELFHEAL_CONFIG), all on the same recorded evidence.

Printed per set (dev: `tests/evals/cases`, held-out: `tests/evals/heldout`, scored separately and
never tuned on): every case, then pass counts and fact scores per kind; then a calibration table
(stated confidence of the top hypothesis vs. the share of cases where it was right). The exit
status is 0 when the builtin investigator passes every development case; the held-out set is
only reported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from tests.evals.harness import INVESTIGATORS, KINDS, Case, CaseResult, Investigator, load_sets, run

#: Confidence buckets of the calibration table: [low, high).
BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01))


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


def _tally(rs: Sequence[CaseResult]) -> str:
    passed = sum(r.passed for r in rs)
    checks = sum(len(r.checks) for r in rs)
    ok = sum(sum(c.ok for c in r.checks) for r in rs)
    return f"{passed}/{len(rs)} cases, {ok}/{checks} facts"


def case_table(set_name: str, cases: Sequence[Case], results: dict[str, list[CaseResult]]) -> Table:
    table = Table(title=f"Investigator evals, {set_name} set ({len(cases)} cases)")
    table.add_column("case")
    table.add_column("kind")
    for name in results:
        table.add_column(name, justify="right")
    for i, case in enumerate(cases):
        cells = [f"[{'green' if rs[i].passed else 'red'}]{rs[i].score:.2f}[/]" for rs in results.values()]
        table.add_row(case.name, case.kind, *cells)
    table.add_row("[bold]total[/]", "", *(_tally(rs) for rs in results.values()))
    return table


def kind_table(set_name: str, cases: Sequence[Case], results: dict[str, list[CaseResult]]) -> Table:
    table = Table(title=f"Per kind, {set_name} set")
    table.add_column("kind")
    table.add_column("cases", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    for kind in KINDS:
        idx = [i for i, c in enumerate(cases) if c.kind == kind]
        if idx:
            table.add_row(kind, str(len(idx)), *(_tally([rs[i] for i in idx]) for rs in results.values()))
    return table


def calibration(results: dict[str, list[CaseResult]]) -> dict[str, list[tuple[int, int]]]:
    """Per investigator and bucket: (cases whose top hypothesis was right, cases) by stated confidence."""
    out: dict[str, list[tuple[int, int]]] = {}
    for name, rs in results.items():
        rows = []
        for low, high in BUCKETS:
            inside = [r for r in rs if low <= r.confidence < high]
            rows.append((sum(r.right for r in inside), len(inside)))
        out[name] = rows
    return out


def calibration_table(results: dict[str, list[CaseResult]]) -> Table:
    table = Table(title="Calibration: stated confidence of the top hypothesis vs. how often it was right")
    table.add_column("confidence")
    for name in results:
        table.add_column(name, justify="right")
    cal = calibration(results)
    for b, (low, high) in enumerate(BUCKETS):
        cells = []
        for name in results:
            right, n = cal[name][b]
            cells.append(f"{right}/{n} = {right / n:.0%}" if n else "-")
        table.add_row(f"{low:.0%}-{min(high, 1.0):.0%}", *cells)
    return table


def main() -> int:
    sets = {name: cases for name, cases in load_sets().items() if cases}
    investigators = dict(INVESTIGATORS)
    llm = _llm()
    if llm is not None:
        investigators["llm"] = llm
    console = Console(width=max(Console().width, 120))
    everything: dict[str, list[CaseResult]] = {name: [] for name in investigators}
    by_set: dict[str, dict[str, list[CaseResult]]] = {}
    for set_name, cases in sets.items():
        results = {name: run(cases, fn, name) for name, fn in investigators.items()}
        by_set[set_name] = results
        for name, rs in results.items():
            everything[name] += rs
        console.print(case_table(set_name, cases, results))
        console.print(kind_table(set_name, cases, results))
    console.print(calibration_table(everything))
    if llm is None:
        console.print(
            "LLM investigator not scored: no key configured (SELFHEAL_INVESTIGATION__LLM__API_KEY)."
        )
    for set_name, results in by_set.items():
        for r in results["builtin"]:
            for c in r.checks:
                if not c.ok:
                    console.print(f"builtin {set_name} {r.case}: {c.name} failed ({c.detail})")
    dev = by_set.get("dev", {}).get("builtin", [])
    return 0 if all(r.passed for r in dev) else 1


if __name__ == "__main__":
    sys.exit(main())
