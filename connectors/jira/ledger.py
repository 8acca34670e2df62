"""CreateLedger: what the workers remember about the issues they created, across activity retries.

Jira Cloud's `/search/jql` is not read-after-write consistent: an issue created a moment ago may be
missing from search for seconds. "Search by label before create" alone therefore duplicates the
ticket when a create's answer is lost (timeout, worker killed) and the retry searches too soon.
The ledger closes that gap without trusting the index:

- before `POST /issue` it records the attempt (incident id, time);
- after the answer it records the key, which a retry reads back with `GET /issue/{key}` (consistent);
- a retry that finds an attempt without a key (the answer was lost) and no issue in search, within
  `index_lag_seconds`, waits for the index (a retryable error) instead of creating a second issue.

The record is a table (`jira_creates`) in the incident store's database (`evidence.store_url`;
SQLite in the data dir by default), so a retry that Temporal hands to another worker host reads
what the first host wrote when the workers share that database (PostgreSQL). Without a URL, or
while the database is unreachable, it falls back to this process's memory: same-process retries
stay covered and the ticket is never held back by the ledger. It never decides on its own: Jira
is always asked first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import Engine, Float, String, create_engine, delete
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = structlog.get_logger(__name__)

#: Entries older than this are dropped: by then Jira's index has long caught up.
_KEEP_SECONDS = 7 * 24 * 3600


class _Base(DeclarativeBase):
    pass


class _CreateRow(_Base):
    __tablename__ = "jira_creates"

    incident_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    attempted_at: Mapped[float] = mapped_column(Float)
    key: Mapped[str | None] = mapped_column(String(100), nullable=True)


@dataclass(frozen=True)
class CreateRecord:
    attempted_at: float
    key: str | None = None


class CreateLedger:
    """`url`: a SQLAlchemy URL (the incident store's); None keeps the ledger in memory only."""

    def __init__(self, url: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: dict[str, CreateRecord] = {}
        self._engine: Engine | None = None

    def _db(self) -> Engine | None:
        """The engine, opened on first use so an unreachable database never stops a worker."""
        if self.url is None:
            return None
        if self._engine is None:
            parsed = make_url(self.url)
            if parsed.drivername in ("postgresql", "postgres"):
                parsed = parsed.set(drivername="postgresql+psycopg")
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
            _Base.metadata.create_all(engine)
            self._engine = engine
        return self._engine

    def _shared(
        self, what: str, fn: Callable[[Session], CreateRecord | None]
    ) -> tuple[bool, CreateRecord | None]:
        """Run `fn` in a transaction: (True, its result), or (False, None) without a database or
        when it fails (logged), so memory decides."""
        try:
            engine = self._db()
            if engine is None:
                return False, None
            with Session(engine) as session, session.begin():
                return True, fn(session)
        except SQLAlchemyError as err:
            log.warning(
                "jira create ledger: database unavailable, using this worker's memory",
                action=what,
                error=str(err).splitlines()[0][:200],
            )
            return False, None

    def get(self, incident_id: str) -> CreateRecord | None:
        def read(session: Session) -> CreateRecord | None:
            row = session.get(_CreateRow, incident_id)
            return None if row is None else CreateRecord(row.attempted_at, row.key)

        with self._lock:
            answered, record = self._shared("read", read)
            return record if answered else self._memory.get(incident_id)

    def age(self, record: CreateRecord) -> float:
        return self._clock() - record.attempted_at

    def attempt(self, incident_id: str) -> None:
        """Record a create about to be sent (written before the request leaves)."""
        now = self._clock()

        def write(session: Session) -> None:
            session.execute(delete(_CreateRow).where(_CreateRow.attempted_at < now - _KEEP_SECONDS))
            session.merge(_CreateRow(incident_id=incident_id, attempted_at=now, key=None))

        with self._lock:
            self._memory = {k: v for k, v in self._memory.items() if now - v.attempted_at < _KEEP_SECONDS}
            self._memory[incident_id] = CreateRecord(now, None)
            self._shared("attempt", write)

    def created(self, incident_id: str, key: str) -> None:
        """Record the key Jira answered with."""

        def write(session: Session) -> None:
            row = session.get(_CreateRow, incident_id)
            attempted = row.attempted_at if row is not None else self._clock()
            session.merge(_CreateRow(incident_id=incident_id, attempted_at=attempted, key=key))

        with self._lock:
            before = self._memory.get(incident_id)
            self._memory[incident_id] = CreateRecord(before.attempted_at if before else self._clock(), key)
            self._shared("created", write)

    def forget(self, incident_id: str) -> None:
        def drop(session: Session) -> None:
            session.execute(delete(_CreateRow).where(_CreateRow.incident_id == incident_id))

        with self._lock:
            self._memory.pop(incident_id, None)
            self._shared("forget", drop)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
