"""Closed incidents, kept so a new incident can show which earlier ones looked like it and what fixed them.

One table, written when an incident closes (`IncidentStore.record`, an idempotent upsert by id) and
read by `similar`, which ranks stored incidents by a blend of label overlap (alertname, service,
severity, then any other label) and Okapi BM25 over their text (title, annotations, timeline).
Only portable column types are used, so PostgreSQL is a change of URL; SQLite is the default
(`sqlite:///<data_dir>/incidents.db`).

Each row also keeps what the loop's own metrics need (outcome, playbook category, alert start,
fix deployed and verified times, investigation duration; playbook runs in `playbook_runs`), so
any API replica can aggregate them at scrape time (`selfheal.loop_metrics`). Columns added since
a database was created are added to it on open.

`playbook_drafts` keeps the playbook drafted from each incident an approved fix healed (or why
none was), so `/metrics` can count drafts proposed and accepted (a later incident matched one).

`llm_runs` holds one row per LLM agent run (investigator or coding agent), written when the run
ends, open incident or not: what `/metrics` totals by model and outcome, and what the per-incident
and per-day cost budgets are read from.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.schema import CreateColumn

from models.agent import AgentRunRecord, LlmSpend
from models.evidence import SimilarIncident
from models.incident import IncidentView

BM25_K1 = 1.5
BM25_B = 0.75
#: How much the label overlap and the text similarity weigh in the final score (sum to 1).
LABEL_WEIGHT = 0.5
TEXT_WEIGHT = 0.5
#: Weights inside the label score: the alert's name matters most, then the service, then severity.
_LABEL_WEIGHTS = {"alertname": 3.0, "service": 2.0, "severity": 1.0}
_OTHER_LABELS_WEIGHT = 1.0
#: At most this many of the most recently closed incidents are compared (newest first).
MAX_CORPUS = 5000
_TOKEN = re.compile(r"[a-z0-9]+")


class _Base(DeclarativeBase):
    pass


class ClosedIncident(_Base):
    __tablename__ = "closed_incidents"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    service: Mapped[str] = mapped_column(String(200), default="", index=True)
    alertname: Mapped[str] = mapped_column(String(200), default="", index=True)
    severity: Mapped[str] = mapped_column(String(50), default="")
    #: JSON object of the incident's labels (text, for portability).
    labels: Mapped[str] = mapped_column(Text, default="{}")
    text: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(50), default="")
    fix: Mapped[str] = mapped_column(Text, default="")
    ticket_url: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    # --- loop metrics (added later: nullable or with a server default, so old files gain them) ---
    #: Playbook `category`, `novel` when no playbook matched, `uncategorized` when it has none.
    category: Mapped[str] = mapped_column(String(100), default="", server_default="")
    #: The matched playbook ("" when none matched).
    playbook: Mapped[str] = mapped_column(String(200), default="", server_default="")
    #: Remediation runs that were rolled back.
    rollbacks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alert_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deployed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    alert_to_deployed_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert_to_verified_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    investigation_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: 1 when the incident was escalated to humans (its timeline has an `escalated` event).
    escalated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PlaybookDraft(_Base):
    """The playbook drafted from an incident an approved fix healed (`playbooks/draft.py`), or why
    none was: its name is what `/metrics` counts as accepted once a later incident matches it."""

    __tablename__ = "playbook_drafts"

    incident_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: The drafted playbook's name ("" when refused).
    name: Mapped[str] = mapped_column(String(200), default="", index=True)
    #: proposed (lints clean: attached, and pushed when a playbooks repository is configured) | refused
    status: Mapped[str] = mapped_column(String(50), default="")
    #: revert | patch
    kind: Mapped[str] = mapped_column(String(50), default="")
    yaml: Mapped[str] = mapped_column(Text, default="")
    #: Why no draft was proposed (refused), one reason per line.
    reasons: Mapped[str] = mapped_column(Text, default="")
    #: The branch pushed to the playbooks repository ("" when none is configured).
    branch: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PlaybookRun(_Base):
    """One remediation run of a closed incident (its `remediations`, in order)."""

    __tablename__ = "playbook_runs"

    incident_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    playbook: Mapped[str] = mapped_column(String(200), default="", index=True)
    #: healed | rolled_back | failed | skipped | blocked
    result: Mapped[str] = mapped_column(String(50), default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    approved: Mapped[int] = mapped_column(Integer, default=0)


class LlmRun(_Base):
    """One LLM agent run's telemetry (`models.investigation.AgentRun`), by run id."""

    __tablename__ = "llm_runs"

    run_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(200), index=True)
    #: investigator | coding
    agent: Mapped[str] = mapped_column(String(50), default="investigator")
    model: Mapped[str] = mapped_column(String(200), default="")
    #: ok | failed | budget_exhausted
    outcome: Mapped[str] = mapped_column(String(50), default="")
    #: Which budget stopped it ("" when none did).
    stopped_by: Mapped[str] = mapped_column(String(50), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON object: tool name → calls.
    tool_calls_by_name: Mapped[str] = mapped_column(Text, default="{}")
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: Estimated from the price table; NULL when the model had no price (unknown, not zero).
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: JSON list of {path, read_before} (coding agent: the files read before each edit).
    edits: Mapped[str] = mapped_column(Text, default="[]")


#: Timeline event kinds (sent by RemediationWorkflow) that mark the loop's milestones.
EVENT_REMEDIATION_STARTED = "remediation_started"
#: Sent once the deploy steps completed, right before verification starts.
EVENT_VERIFYING = "verifying"
#: Sent when the fix was deployed and verification passed (or there was nothing to verify).
EVENT_HEALED = "remediation_healed"
#: Sent when the incident was escalated to humans.
EVENT_ESCALATED = "escalated"
#: Category of an incident no playbook matched; of a matched playbook that names none.
NOVEL = "novel"
UNCATEGORIZED = "uncategorized"
#: Remediation results that mean a fix was actually attempted (not skipped or blocked).
ATTEMPTED_RESULTS = ("healed", "rolled_back", "failed")


def engine_url(url: str) -> URL:
    """The URL with a driver we ship: a bare `postgresql://` means psycopg 3, not psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def add_missing_columns(engine: Engine) -> list[str]:
    """ALTER TABLE … ADD COLUMN for model columns an older database lacks; returns their names.

    Several processes may open the same database at once: a column another one just added is fine.
    """
    added: list[str] = []
    for table in _Base.metadata.sorted_tables:
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            except SQLAlchemyError:
                have = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if column.name not in have:
                    raise
                continue
            added.append(column.name)
    return added


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'incidents.db'}"


def tokenize(text: str) -> list[str]:
    """Lowercase words: runs of ASCII letters and digits."""
    return _TOKEN.findall(text.lower())


def bm25_scores(
    query: Sequence[str], documents: Sequence[Sequence[str]], *, k1: float = BM25_K1, b: float = BM25_B
) -> list[float]:
    """Okapi BM25 of each tokenized document for the (deduplicated) query terms.

    idf(t) = ln((N - n_t + 0.5) / (n_t + 0.5) + 1), which is never negative.
    """
    n_docs = len(documents)
    if n_docs == 0:
        return []
    avgdl = sum(len(d) for d in documents) / n_docs or 1.0
    counts = [Counter(d) for d in documents]
    terms = list(dict.fromkeys(query))
    idf = {}
    for term in terms:
        n_t = sum(1 for c in counts if term in c)
        idf[term] = math.log((n_docs - n_t + 0.5) / (n_t + 0.5) + 1.0)
    scores = []
    for doc, tf in zip(documents, counts, strict=True):
        norm = k1 * (1.0 - b + b * len(doc) / avgdl)
        scores.append(sum(idf[t] * tf[t] * (k1 + 1.0) / (tf[t] + norm) for t in terms if tf[t]))
    return scores


def incident_labels(view: IncidentView) -> dict[str, str]:
    """The union of the incident's alert labels (first alert wins), plus its summary fields."""
    labels: dict[str, str] = {}
    for alert in view.alerts:
        for key, value in alert.labels.items():
            labels.setdefault(key, value)
    for key, value in (("alertname", view.alertname), ("service", view.service), ("severity", view.severity)):
        if value:
            labels[key] = value
    return labels


def incident_text(view: IncidentView) -> str:
    """Title, alert annotations and timeline messages: what BM25 compares."""
    parts = [view.title]
    for alert in view.alerts:
        parts.extend(alert.annotations.values())
    parts.extend(event.message for event in view.timeline)
    return "\n".join(p for p in parts if p)


def matched_playbook(view: IncidentView) -> str:
    """The playbook that matched the incident ("" when none did)."""
    if view.proposal is not None:
        return view.proposal.playbook
    return view.remediations[-1].playbook if view.remediations else ""


def alert_started_at(view: IncidentView) -> datetime | None:
    """When the earliest alert of the group started firing (Alertmanager's `startsAt`)."""
    starts = [_utc(a.startsAt) for a in view.alerts]
    return min((s for s in starts if s is not None), default=None)


def fix_times(view: IncidentView) -> tuple[datetime | None, datetime | None]:
    """(deployed, verified) of the fix that healed the incident, from the remediation's timeline events.

    The run that healed is the last `remediation_started` before `remediation_healed`; its deploy
    finished when `verifying` was sent, or at `remediation_healed` when the playbook has no verify.
    """
    started: int | None = None
    for i, event in enumerate(view.timeline):
        if event.kind == EVENT_REMEDIATION_STARTED:
            started = i
        elif event.kind == EVENT_HEALED:
            run = view.timeline[(started or 0) : i]
            verifying = [e for e in run if e.kind == EVENT_VERIFYING]
            deployed = verifying[-1].at if verifying else event.at
            return _utc(deployed), _utc(event.at)
    return None, None


def _since(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def derive_fix(view: IncidentView) -> str:
    """What fixed it, when the caller does not say: the playbook (and commit), else the human's comment."""
    for rem in reversed(view.remediations):
        if rem.outcome in ("healed", "succeeded", "success", "ok"):
            return f"{rem.playbook} ({rem.fix_commit})" if rem.fix_commit else rem.playbook
    if view.decision is not None and view.decision.comment:
        return f"{view.decision.by}: {view.decision.comment}"
    if view.remediations:
        rem = view.remediations[-1]
        return f"{rem.playbook} ({rem.fix_commit})" if rem.fix_commit else rem.playbook
    return ""


def label_score(query: dict[str, str], candidate: dict[str, str]) -> float:
    """Weighted overlap in [0, 1]: alertname, service, severity, then the share of other labels equal."""
    total = 0.0
    got = 0.0
    for key, weight in _LABEL_WEIGHTS.items():
        if query.get(key):
            total += weight
            if candidate.get(key) == query[key]:
                got += weight
    others = {k: v for k, v in query.items() if k not in _LABEL_WEIGHTS}
    if others:
        total += _OTHER_LABELS_WEIGHT
        got += _OTHER_LABELS_WEIGHT * sum(1 for k, v in others.items() if candidate.get(k) == v) / len(others)
    return got / total if total else 0.0


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class IncidentStore:
    """Closed incidents in a SQL database (SQLAlchemy 2; SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        parsed = engine_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
        _Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> IncidentStore:
        return cls(default_url(data_dir))

    def close(self) -> None:
        self.engine.dispose()

    def record(self, view: IncidentView, fix: str = "", category: str = "") -> None:
        """Insert or replace the incident (by id) and its playbook runs; calling it twice changes nothing.

        `category` is the matched playbook's `category:` (the caller knows the playbooks).
        """
        playbook = matched_playbook(view)
        started = alert_started_at(view)
        deployed, verified = fix_times(view)
        investigation = view.investigation.duration_seconds if view.investigation is not None else None
        row = ClosedIncident(
            id=view.id,
            title=view.title,
            service=view.service,
            alertname=view.alertname,
            severity=view.severity,
            labels=json.dumps(incident_labels(view), sort_keys=True),
            text=incident_text(view),
            outcome=view.outcome.value if view.outcome is not None else "",
            fix=fix or derive_fix(view),
            ticket_url=view.ticket.url if view.ticket is not None else "",
            opened_at=_utc(view.opened_at) or view.opened_at,
            closed_at=_utc(view.closed_at),
            category=(category or UNCATEGORIZED) if playbook else NOVEL,
            playbook=playbook,
            rollbacks=sum(1 for r in view.remediations if r.outcome == "rolled_back"),
            alert_started_at=started,
            deployed_at=deployed,
            verified_at=verified,
            alert_to_deployed_seconds=_since(started, deployed),
            alert_to_verified_seconds=_since(started, verified),
            investigation_seconds=investigation,
            escalated=1 if any(e.kind == EVENT_ESCALATED for e in view.timeline) else 0,
        )
        runs = [
            PlaybookRun(
                incident_id=view.id,
                seq=i,
                playbook=r.playbook,
                result=r.outcome,
                seconds=r.seconds,
                approved=1 if r.approved_by else 0,
            )
            for i, r in enumerate(view.remediations)
        ]
        with Session(self.engine) as session, session.begin():
            session.merge(row)
            session.execute(delete(PlaybookRun).where(PlaybookRun.incident_id == view.id))
            session.add_all(runs)

    def record_llm_run(self, record: AgentRunRecord) -> None:
        """Insert or replace one agent run's telemetry by its run id; calling it twice changes nothing."""
        run = record.run
        row = LlmRun(
            run_id=record.run_id,
            incident_id=record.incident_id,
            agent=run.agent,
            model=run.model,
            outcome=run.outcome,
            stopped_by=run.stopped_by,
            started_at=_utc(run.started_at) or datetime.now(UTC),
            wall_seconds=run.wall_seconds,
            requests=run.requests,
            tool_calls=run.tool_call_total,
            tool_calls_by_name=json.dumps(run.tool_calls, sort_keys=True),
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            cost_usd=run.cost_usd,
            edits=json.dumps([e.model_dump(mode="json") for e in run.edits]),
        )
        with Session(self.engine) as session, session.begin():
            session.merge(row)

    def llm_spend(self, incident_id: str, day_start: datetime) -> LlmSpend:
        """What recorded LLM runs cost: this incident's (all time) and every incident's since
        `day_start`. Runs without a price add nothing: their cost is unknown."""
        cost = func.coalesce(func.sum(LlmRun.cost_usd), 0.0)
        with Session(self.engine) as session:
            incident = session.scalar(select(cost).where(LlmRun.incident_id == incident_id))
            day, runs = session.execute(
                select(cost, func.count()).where(LlmRun.started_at >= _utc(day_start))
            ).one()
        return LlmSpend(incident_cost=float(incident or 0.0), day_cost=float(day or 0.0), day_runs=int(runs))

    def record_draft(
        self,
        incident_id: str,
        *,
        name: str = "",
        status: str,
        kind: str = "",
        yaml: str = "",
        reasons: Sequence[str] = (),
        branch: str = "",
        now: datetime,
    ) -> None:
        """Insert or replace the incident's draft (by incident id); a retry changes nothing but
        what it says. The first `created_at` is kept: it is when the draft was proposed."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            existing = session.get(PlaybookDraft, incident_id)
            created = existing.created_at if existing is not None else _utc(now)
            session.merge(
                PlaybookDraft(
                    incident_id=incident_id,
                    name=name,
                    status=status,
                    kind=kind,
                    yaml=yaml,
                    reasons="\n".join(reasons),
                    branch=branch,
                    created_at=created,
                )
            )

    def get_draft(self, incident_id: str) -> PlaybookDraft | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(PlaybookDraft, incident_id)

    def get(self, incident_id: str) -> ClosedIncident | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(ClosedIncident, incident_id)

    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(ClosedIncident)) or 0)

    def similar(
        self, view: IncidentView, limit: int = 5, exclude_id: str | None = None
    ) -> list[SimilarIncident]:
        """The stored incidents most like `view`, best first; those with nothing in common are left out."""
        stmt = select(ClosedIncident).order_by(ClosedIncident.closed_at.desc().nulls_last()).limit(MAX_CORPUS)
        with Session(self.engine) as session:
            rows = [r for r in session.scalars(stmt).all() if r.id != exclude_id]
        if not rows or limit <= 0:
            return []
        query_labels = incident_labels(view)
        text = bm25_scores(tokenize(incident_text(view)), [tokenize(r.text) for r in rows])
        best_text = max(text) or 1.0
        ranked: list[tuple[float, ClosedIncident]] = []
        for row, text_score in zip(rows, text, strict=True):
            try:
                labels = json.loads(row.labels or "{}")
            except ValueError:
                labels = {}
            if not isinstance(labels, dict):
                labels = {}
            labels = {str(k): str(v) for k, v in labels.items()}
            for key in ("alertname", "service", "severity"):
                if getattr(row, key):
                    labels[key] = getattr(row, key)
            score = LABEL_WEIGHT * label_score(query_labels, labels) + TEXT_WEIGHT * text_score / best_text
            if score > 0:
                ranked.append((score, row))
        ranked.sort(key=lambda item: (-item[0], -(_ts(item[1].closed_at))))
        return [
            SimilarIncident(
                incident_id=row.id,
                title=row.title,
                outcome=row.outcome,
                fix=row.fix,
                score=round(score, 4),
                closed_at=_utc(row.closed_at),
                url=row.ticket_url,
            )
            for score, row in ranked[:limit]
        ]


def _ts(value: datetime | None) -> float:
    utc = _utc(value)
    return utc.timestamp() if utc is not None else 0.0


class LazyIncidentStore:
    """One IncidentStore (engine and connection pool) per worker, opened on first call.

    Opening one per call (engine, create_all, column check) cost more than the search itself; opening
    it at start-up would make an unreachable database stop the worker instead of one evidence source.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: IncidentStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> IncidentStore:
        with self._lock:
            if self._store is None:
                self._store = IncidentStore(self.url)
            return self._store

    def close(self) -> None:
        """Dispose of the store's engine, if it was opened; the next call opens a new one."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
