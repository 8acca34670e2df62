"""How much of a team's real alert traffic the loaded playbooks would handle, before `mode: auto`.

Input is what Alertmanager already sends: stored webhook bodies (one JSON body, an array of them,
or one per line). An alert *episode* is one (fingerprint, startsAt): Alertmanager re-sends the same
episode every `group_interval` and once more on resolve, and every receiver and both peers of an HA
pair send it too, so counting notifications would count one page many times.

Matching is `PlaybookSet.match`, the worker's own, so a playbook counts only where its matchers
hold, its params validate and its plan renders. Counting is pure: the one read that needs I/O, a
diagnose check, is a function the caller passes in. Nothing here runs a step.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from models.incident import AlertmanagerWebhook, WebhookAlert
from models.plan import Candidate, PlannedCheck
from playbooks.matcher import PlaybookSet

#: Always-firing heartbeat alerts of kube-prometheus: received, never a problem to heal.
EXCLUDED_ALERTNAMES = frozenset({"Watchdog", "InfoInhibitor"})
#: Modes in which a playbook changes something (with or without a human's approval).
FIXING_MODES = frozenset({"auto", "approve"})
#: How many distinct reasons per row are kept for "why did nothing match".
TOP_REASONS = 3

#: JSON's whitespace (not Python's wider `\s`).
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

#: Evaluates one rendered diagnose check at a moment: True/False, or None when it could not run.
CheckAt = Callable[[PlannedCheck, datetime], bool | None]
DiagnoseVerdict = Literal["confirmed", "ruled_out", "unknown", "no_checks"]
Count = Literal["episodes", "fixable", "suggest_only", "unmatched"]


class InputError(ValueError):
    """A webhook body that cannot be read; `line` is where the body (or the JSON error) starts."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message


# ---------------------------------------------------------------------------------------- reading


def read_bodies(text: str) -> list[tuple[int, AlertmanagerWebhook]]:
    """Every webhook body in `text` with the line it starts on.

    `text` holds JSON values one after another: a body, or an array of bodies. That covers one
    body per file, a JSON array, JSONL (a webhook log) and concatenated pretty-printed bodies alike.
    """
    return _Reader(text).bodies()


class _Reader:
    """One pass over the text; line numbers are counted as it goes (a log can be large)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 1 if text.startswith("\ufeff") else 0
        self._counted = (0, 1)  # (position, its line)
        self.out: list[tuple[int, AlertmanagerWebhook]] = []

    def bodies(self) -> list[tuple[int, AlertmanagerWebhook]]:
        text = self.text
        self._skip()
        while self.pos < len(text):
            if text[self.pos] != "[":
                self._take("")
                continue
            self.pos += 1
            self._skip()
            index = 0
            while not text.startswith("]", self.pos):
                self._take(f"[{index}]")
                index += 1
                if text.startswith(",", self.pos):
                    self.pos += 1
                    self._skip()
                elif not text.startswith("]", self.pos):
                    raise InputError(self._line(), "invalid JSON: expected ',' or ']' after an array element")
            self.pos += 1
            self._skip()
        return self.out

    def _take(self, where: str) -> None:
        """Decode the body at the current position, then skip the whitespace after it."""
        line = self._line()
        try:
            data, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise InputError(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
        except RecursionError as exc:
            raise InputError(line, "invalid JSON: nested too deeply") from exc
        self.out.append((line, _body(data, line, where)))
        self._skip()

    def _skip(self) -> None:
        found = _WHITESPACE.match(self.text, self.pos)
        if found:
            self.pos = found.end()

    def _line(self) -> int:
        done, line = self._counted
        line += self.text.count("\n", done, self.pos)
        self._counted = (self.pos, line)
        return line


def _body(data: Any, line: int, where: str) -> AlertmanagerWebhook:
    """Validate one decoded value; `where` is its array index (`[3]`) or empty."""
    if not isinstance(data, dict):
        what = type(data).__name__ if data is not None else "null"
        raise InputError(line, f"{where or '(root)'}: expected a webhook body (a JSON object), got {what}")
    try:
        return AlertmanagerWebhook.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in first["loc"]) or "(root)"
        field_path = f"{where}.{path}" if where else path
        raise InputError(line, f"not an Alertmanager webhook body: {field_path}: {first['msg']}") from exc


# --------------------------------------------------------------------------------------- episodes


@dataclass
class Episode:
    """One alert from when it started firing; `alert` is its first firing notification if any."""

    alert: WebhookAlert

    @property
    def starts_at(self) -> datetime:
        return self.alert.startsAt


@dataclass
class Episodes:
    episodes: list[Episode]
    #: Notifications read (bodies) and alerts in them, before de-duplication.
    bodies: int
    alerts: int
    #: Alerts Alertmanager left out of bodies (`truncatedAlerts`, its `max_alerts`): never seen here.
    truncated: int


def collect_episodes(bodies: Iterable[AlertmanagerWebhook]) -> Episodes:
    """One episode per (fingerprint, startsAt), however often and by whichever receiver it was sent."""
    seen: dict[tuple[str, datetime], Episode] = {}
    n_bodies = n_alerts = truncated = 0
    for body in bodies:
        n_bodies += 1
        truncated += body.truncatedAlerts
        for alert in body.alerts:
            n_alerts += 1
            key = (alert.fingerprint, alert.startsAt)
            episode = seen.get(key)
            if episode is None:
                seen[key] = episode = Episode(alert)
            elif episode.alert.status != "firing" and alert.status == "firing":
                episode.alert = alert
    return Episodes(list(seen.values()), n_bodies, n_alerts, truncated)


# --------------------------------------------------------------------------------------- counting


@dataclass
class Row:
    """The episodes of one alertname and severity, and what the playbooks would make of them."""

    alertname: str
    severity: str
    excluded: bool
    episodes: int = 0
    fixable: int = 0
    suggest_only: int = 0
    unmatched: int = 0
    #: Playbook name → episodes it matched (fixing and suggest-only).
    playbooks: Counter[str] = field(default_factory=Counter)
    #: Why nothing matched: reason → episodes (each episode counts each of its reasons once).
    reasons: Counter[str] = field(default_factory=Counter)
    #: For fixable episodes when diagnose ran: verdict → episodes.
    diagnose: Counter[str] = field(default_factory=Counter)


@dataclass
class Coverage:
    rows: list[Row]
    diagnosed: bool

    def counted(self) -> list[Row]:
        """The rows the coverage share is taken over (heartbeat alerts left out)."""
        return [r for r in self.rows if not r.excluded]

    def total(self, count: Count) -> int:
        return sum(int(getattr(r, count)) for r in self.counted())

    def diagnose_total(self, verdict: DiagnoseVerdict) -> int:
        return sum(r.diagnose[verdict] for r in self.counted())


def diagnose_verdict(checks: Sequence[PlannedCheck], at: datetime, check_at: CheckAt) -> DiagnoseVerdict:
    """All checks hold: confirmed; any fails: ruled out (the worker would not act); else unknown."""
    if not checks:
        return "no_checks"
    results = [check_at(check, at) for check in checks]
    if any(r is False for r in results):
        return "ruled_out"
    return "confirmed" if all(r is True for r in results) else "unknown"


def _choose(candidates: Sequence[Candidate], at: datetime, check_at: CheckAt) -> DiagnoseVerdict:
    """The worker's choice at `at`, walking the candidates in order: the first one confirmed (or
    without checks) is chosen; one that cannot be checked stops the choice (unknown), as in the
    worker; ruled out only when every candidate is. A candidate whose params come from a query is
    unknown here (resolving them needs the query at that time too)."""
    for candidate in candidates:
        if candidate.plan is None:
            return "unknown"
        verdict = diagnose_verdict(candidate.plan.diagnose, at, check_at)
        if verdict != "ruled_out":
            return verdict
    return "ruled_out"


def count_coverage(
    episodes: Iterable[Episode],
    playbooks: PlaybookSet,
    *,
    settings_ctx: dict[str, str] | None = None,
    check_at: CheckAt | None = None,
) -> Coverage:
    """Match every episode as the worker would have when it fired; with `check_at`, run the fixing
    playbook's diagnose checks at the episode's start.

    An episode seen only as resolved is matched as firing: it fired, only its first notification
    is missing from the input. Rows come most episodes first.
    """
    rows: dict[tuple[str, str], Row] = {}
    for episode in episodes:
        alert = episode.alert
        name = alert.alertname
        severity = alert.labels.get("severity", "")
        row = rows.get((name, severity))
        if row is None:
            row = rows[(name, severity)] = Row(name, severity, excluded=name in EXCLUDED_ALERTNAMES)
        row.episodes += 1
        if row.excluded:
            continue
        firing = alert if alert.status == "firing" else alert.model_copy(update={"status": "firing"})
        result = playbooks.match(firing, settings_ctx=settings_ctx)
        if result.playbook is None:
            row.unmatched += 1
            row.reasons.update(set(result.reasons))
            continue
        # Every matching playbook, in precedence order: the worker's diagnose chooses among them.
        fixing = [c for c in result.candidates() if c.mode in FIXING_MODES]
        row.playbooks[(fixing[0] if fixing else result.candidates()[0]).playbook] += 1
        if not fixing:
            row.suggest_only += 1
            continue
        row.fixable += 1
        if check_at is not None:
            row.diagnose[_choose(fixing, episode.starts_at, check_at)] += 1
    ordered = sorted(rows.values(), key=lambda r: (r.excluded, -r.episodes, r.alertname, r.severity))
    return Coverage(ordered, diagnosed=check_at is not None)


def share(part: int, whole: int) -> float:
    """`part` as a percentage of `whole`, one decimal; 0 when there is nothing."""
    return round(100.0 * part / whole, 1) if whole else 0.0
