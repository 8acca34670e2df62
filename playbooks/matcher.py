"""Which playbook applies to an alert: matchers, precedence, validated params, then a rendered plan.

A playbook applies only when its alertname and every matcher match, every param value passes its
pattern, and the plan renders safely; candidates are tried by precedence (priority, then the number
of matchers) and the reasons the others did not apply are kept for the ticket and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import combinations

from models.incident import WebhookAlert
from models.plan import MatchResult
from playbooks.render import RenderError, render_plan
from playbooks.schema import CONTROL, LabelMatcher, Playbook, show

#: Longest param value accepted, whatever the pattern says.
MAX_PARAM_LENGTH = 1024


def extract_params(playbook: Playbook, alert: WebhookAlert) -> tuple[dict[str, str], list[str]]:
    """Param values from the alert's labels/annotations (or defaults), each checked against its pattern."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, param in playbook.spec.params.items():
        source = alert.labels if param.source == "label" else alert.annotations
        raw = source.get(param.key, "")
        if raw == "":  # Prometheus: an empty label is an absent label
            if param.default is None:
                problems.append(f"param {name}: {param.source} {param.key!r} is missing")
                continue
            raw = param.default
        if CONTROL.search(raw):
            problems.append(f"param {name}: value {show(raw)} contains a control character (NUL/newline)")
            continue
        if len(raw) > MAX_PARAM_LENGTH:
            problems.append(f"param {name}: value is longer than {MAX_PARAM_LENGTH} characters")
            continue
        found = param.regex.fullmatch(raw)
        if found is None:
            problems.append(f"param {name}: value {show(raw)} does not match {param.pattern}")
            continue
        value = found.group(param.group) if param.group is not None else raw
        if value is None:
            problems.append(f"param {name}: group {param.group} of {param.pattern} did not match {show(raw)}")
            continue
        values[name] = value
    return values, problems


def _unmatched(matcher: LabelMatcher, labels: Mapping[str, str]) -> str:
    actual = labels.get(matcher.name)
    got = f"{matcher.name}={show(actual)}" if actual is not None else f"{matcher.name} absent"
    return f"matcher {matcher} does not match ({got})"


def provably_disjoint(a: Playbook, b: Playbook) -> bool:
    """True when no alert can satisfy both: some label is pinned by `=` in one and refused by the other."""
    if a.spec.match.alertname != b.spec.match.alertname:
        return True
    for left, right in ((a, b), (b, a)):
        for pinned in left.spec.match.matchers:
            if pinned.op != "=":
                continue
            value = {pinned.name: pinned.value}
            for other in right.spec.match.matchers:
                if other.name == pinned.name and not other.matches(value):
                    return True
    return False


def find_ties(playbooks: Iterable[Playbook]) -> list[tuple[Playbook, Playbook]]:
    """Pairs precedence cannot order (same alertname, priority and matcher count) that may both match."""
    ties = []
    for a, b in combinations(sorted(playbooks, key=lambda p: p.name), 2):
        if a.rank[:2] == b.rank[:2] and not provably_disjoint(a, b):
            ties.append((a, b))
    return ties


class PlaybookSet:
    """The loaded playbooks; `match` is pure (no I/O), so it can run inside an activity or the CLI."""

    def __init__(
        self, playbooks: Iterable[Playbook], *, skipped: Iterable[tuple[Playbook, str]] = ()
    ) -> None:
        self.playbooks = sorted(playbooks, key=lambda p: p.rank)
        self.by_name = {p.name: p for p in self.playbooks}
        #: Library playbooks left out (their repo is not configured), with why: reported when relevant.
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.playbooks)

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks)

    def match_first(
        self,
        alerts: Iterable[WebhookAlert],
        *,
        incident_id: str = "",
        settings_ctx: dict[str, str] | None = None,
    ) -> MatchResult | None:
        """The first firing alert a playbook applies to; else why none applies to the first firing one."""
        first: MatchResult | None = None
        for alert in alerts:
            if alert.status != "firing":
                continue
            result = self.match(alert, incident_id=incident_id, settings_ctx=settings_ctx)
            if result.plan is not None:
                return result
            first = first or result
        return first

    def match(
        self,
        alert: WebhookAlert,
        *,
        incident_id: str = "",
        settings_ctx: dict[str, str] | None = None,
    ) -> MatchResult:
        """The playbook that applies to `alert` with its rendered plan, or why none does."""
        result = MatchResult(fingerprint=alert.fingerprint, alertname=alert.alertname)
        for playbook, why in self.skipped:
            if playbook.spec.match.alertname == alert.alertname:
                result.reasons.append(f"{playbook.name}: not loaded: repo {why}")
        candidates = [p for p in self.playbooks if p.spec.match.alertname == alert.alertname]
        if not candidates:
            if not result.reasons:
                result.reasons.append(f"no playbook handles alertname {show(alert.alertname)}")
            return result
        matching = []
        for playbook in candidates:
            failed = [m for m in playbook.spec.match.matchers if not m.matches(alert.labels)]
            if failed:
                result.reasons.append(f"{playbook.name}: {_unmatched(failed[0], alert.labels)}")
            else:
                matching.append(playbook)
        chosen = None
        for playbook in matching:
            if chosen is not None:
                result.reasons.append(f"{playbook.name}: also matches, but {chosen.name} takes precedence")
                continue
            params, problems = extract_params(playbook, alert)
            if problems:
                result.reasons.extend(f"{playbook.name}: {p}" for p in problems)
                continue
            try:
                plan = render_plan(
                    playbook,
                    params=params,
                    fingerprint=alert.fingerprint,
                    status=alert.status,
                    starts_at=alert.startsAt,
                    incident_id=incident_id,
                    settings_ctx=settings_ctx,
                )
            except RenderError as exc:
                result.reasons.extend(f"{playbook.name}: {p}" for p in exc.problems)
                continue
            tied = [p.name for p in matching if p is not playbook and p.rank[:2] == playbook.rank[:2]]
            if tied:
                result.reasons.append(
                    f"{playbook.name}: ties with {', '.join(tied)} (same priority and number of matchers); "
                    "picked by name — `selfheal playbooks lint` reports this tie"
                )
            chosen = playbook
            result.playbook = playbook.name
            result.mode = playbook.spec.policy.mode
            result.params = params
            result.plan = plan
        return result
