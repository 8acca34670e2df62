"""Which playbook applies to an alert: matchers, precedence, validated params, then a rendered plan.

A playbook applies only when its alertname and every matcher match, every param value passes its
pattern, and the plan renders safely; the ones that apply are candidates in precedence order
(priority, then the number of matchers), the first one first, and the reasons the others did not
apply are kept for the ticket and the CLI. Which candidate runs is decided at run time by their
`diagnose` checks (the incident workflow); `from: query` params are resolved then, too (`resolve`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import combinations

from models.incident import WebhookAlert
from models.plan import Candidate, MatchResult, RemediationPlan
from playbooks.render import RenderError, render_param_query, render_plan
from playbooks.schema import CONTROL, LabelMatcher, ParamSpec, Playbook, show

#: Longest param value accepted, whatever the pattern says.
MAX_PARAM_LENGTH = 1024


def validate_value(name: str, param: ParamSpec, raw: str) -> tuple[str | None, str]:
    """One untrusted value against its param's rules: (the value, "") or (None, why not)."""
    if CONTROL.search(raw):
        return None, f"param {name}: value {show(raw)} contains a control character (NUL/newline)"
    if len(raw) > MAX_PARAM_LENGTH:
        return None, f"param {name}: value is longer than {MAX_PARAM_LENGTH} characters"
    found = param.regex.fullmatch(raw)
    if found is None:
        return None, f"param {name}: value {show(raw)} does not match {param.pattern}"
    value = found.group(param.group) if param.group is not None else raw
    if value is None:
        return None, f"param {name}: group {param.group} of {param.pattern} did not match {show(raw)}"
    return value, ""


def extract_params(playbook: Playbook, alert: WebhookAlert) -> tuple[dict[str, str], list[str]]:
    """Param values from the alert's labels/annotations (or defaults), each checked against its pattern.

    `from: query` params are left out: they are resolved at run time (`resolve_params`).
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, param in playbook.spec.params.items():
        if param.source == "query":
            continue
        source = alert.labels if param.source == "label" else alert.annotations
        raw = source.get(param.key, "")
        if raw == "":  # Prometheus: an empty label is an absent label
            if param.default is None:
                problems.append(f"param {name}: {param.source} {param.key!r} is missing")
                continue
            raw = param.default
        value, problem = validate_value(name, param, raw)
        if value is None:
            problems.append(problem)
            continue
        values[name] = value
    return values, problems


def deferred_params(playbook: Playbook) -> list[str]:
    """The params resolved at run time from a PromQL query, in declaration (= resolution) order."""
    return [name for name, param in playbook.spec.params.items() if param.source == "query"]


#: Runs an instant PromQL query: the label sets of its samples, in the order Prometheus returned them.
SeriesQuery = Callable[[str], Sequence[Mapping[str, str]]]


def resolve_params(
    playbook: Playbook,
    params: Mapping[str, str],
    alert: WebhookAlert,
    query: SeriesQuery,
    *,
    settings_ctx: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Add the `from: query` params, in order, to the alert's validated `params`.

    Each query is rendered with the params before it (escaped inside its PromQL strings); label
    `key` of its first sample is validated like a label value. Returns every param in declaration
    order, or the problem that rules the playbook out. Errors of `query` itself propagate.
    """
    values = dict(params)
    for name in deferred_params(playbook):
        param = playbook.spec.params[name]
        try:
            promql = render_param_query(
                playbook,
                name,
                params=values,
                fingerprint=alert.fingerprint,
                status=alert.status,
                starts_at=alert.startsAt,
                settings_ctx=settings_ctx,
            )
        except RenderError as exc:
            return values, exc.problems
        samples = query(promql)
        if not samples:
            return values, [f"param {name}: query {show(promql, 200)} returned no result"]
        raw = samples[0].get(param.key, "")
        if raw == "":
            return values, [
                f"param {name}: the first result of {show(promql, 200)} has no label {param.key!r}"
            ]
        value, problem = validate_value(name, param, raw)
        if value is None:
            return values, [problem]
        values[name] = value
    return {name: values[name] for name in playbook.spec.params}, []


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
            if result.playbook is not None:
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
        """The playbooks that apply to `alert` in precedence order, rendered (unless they have
        `from: query` params), or why none does."""
        result = MatchResult(fingerprint=alert.fingerprint, alertname=alert.alertname)
        for playbook, why in self.skipped:
            if playbook.spec.match.alertname == alert.alertname:
                result.reasons.append(f"{playbook.name}: not loaded: repo {why}")
        named = [p for p in self.playbooks if p.spec.match.alertname == alert.alertname]
        if not named:
            if not result.reasons:
                result.reasons.append(f"no playbook handles alertname {show(alert.alertname)}")
            return result
        matching = []
        for playbook in named:
            failed = [m for m in playbook.spec.match.matchers if not m.matches(alert.labels)]
            if failed:
                result.reasons.append(f"{playbook.name}: {_unmatched(failed[0], alert.labels)}")
            else:
                matching.append(playbook)
        candidates: list[Candidate] = []
        for playbook in matching:
            params, problems = extract_params(playbook, alert)
            if problems:
                result.reasons.extend(f"{playbook.name}: {p}" for p in problems)
                continue
            deferred = deferred_params(playbook)
            plan = None
            if not deferred:
                try:
                    plan = self._render(playbook, params, alert, incident_id, settings_ctx)
                except RenderError as exc:
                    result.reasons.extend(f"{playbook.name}: {p}" for p in exc.problems)
                    continue
            if candidates:
                before = ", ".join(c.playbook for c in candidates)
                result.reasons.append(
                    f"{playbook.name}: also matches, but {candidates[0].playbook} takes precedence;"
                    f" alternative {len(candidates)}, tried if diagnose rules out {before}"
                )
            else:
                tied = [p.name for p in matching if p is not playbook and p.rank[:2] == playbook.rank[:2]]
                if tied:
                    result.reasons.append(
                        f"{playbook.name}: ties with {', '.join(tied)} (same priority and number of"
                        " matchers); picked by name — `selfheal playbooks lint` reports this tie"
                    )
            candidates.append(
                Candidate(
                    playbook=playbook.name,
                    digest=playbook.digest,
                    mode=playbook.spec.policy.mode,
                    params=params,
                    deferred=deferred,
                    plan=plan,
                )
            )
        if candidates:
            first = candidates[0]
            result.playbook = first.playbook
            result.mode = first.mode
            result.params = first.params
            result.plan = first.plan
            result.digest = first.digest
            result.deferred = first.deferred
            result.alternatives = candidates[1:]
        return result

    def resolve(
        self,
        candidate: Candidate,
        alert: WebhookAlert,
        query: SeriesQuery,
        *,
        incident_id: str = "",
        settings_ctx: dict[str, str] | None = None,
    ) -> tuple[RemediationPlan | None, list[str]]:
        """A candidate's plan once its `from: query` params are resolved, or why it is ruled out
        (the problems, without the playbook's name)."""
        playbook = self.by_name.get(candidate.playbook)
        if playbook is None or playbook.digest != candidate.digest:
            return None, [f"the playbook changed since it matched (digest {candidate.digest})"]
        params, problems = resolve_params(playbook, candidate.params, alert, query, settings_ctx=settings_ctx)
        try:
            if not problems:
                return self._render(playbook, params, alert, incident_id, settings_ctx), []
        except RenderError as exc:
            problems = exc.problems
        return None, problems

    def preview(
        self, candidate: Candidate, alert: WebhookAlert, *, settings_ctx: dict[str, str] | None = None
    ) -> RemediationPlan | None:
        """The plan with each run-time param shown as `<name>` (for the CLI; never executed);
        None when the placeholders cannot render."""
        playbook = self.by_name[candidate.playbook]
        params = {**candidate.params, **{name: f"<{name}>" for name in candidate.deferred}}
        params = {name: params[name] for name in playbook.spec.params}
        try:
            return self._render(playbook, params, alert, "", settings_ctx)
        except RenderError:
            return None

    @staticmethod
    def _render(
        playbook: Playbook,
        params: Mapping[str, str],
        alert: WebhookAlert,
        incident_id: str,
        settings_ctx: dict[str, str] | None,
    ) -> RemediationPlan:
        return render_plan(
            playbook,
            params=params,
            fingerprint=alert.fingerprint,
            status=alert.status,
            starts_at=alert.startsAt,
            incident_id=incident_id,
            settings_ctx=settings_ctx,
        )
