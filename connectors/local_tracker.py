"""LocalTracker: the embedded default tracker, tickets `LOCAL-N` in SQLite under the data dir.

It honours the same contract as Jira, including search-before-create by the incident label, so
the idempotency guarantees hold without any external system.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.base import TicketContent, Tracker, TrackerError, dedup_marker
from models.ids import incident_label
from models.incident import TicketRef
from pages.render import render

STATUSES = ("To Do", "In Progress", "Approved", "Rejected", "Done")
DONE_STATUSES = frozenset({"Done"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_label TEXT NOT NULL,
    summary TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    labels TEXT NOT NULL,
    assignee TEXT,
    status TEXT NOT NULL,
    links TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_label ON tickets(incident_label);
CREATE TABLE IF NOT EXISTS attachments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_n INTEGER NOT NULL REFERENCES tickets(n),
    filename TEXT NOT NULL,
    data BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_n INTEGER NOT NULL REFERENCES tickets(n),
    body TEXT NOT NULL,
    author TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_ticket ON comments(ticket_n);
CREATE INDEX IF NOT EXISTS attachments_ticket ON attachments(ticket_n);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class LocalTracker(Tracker):
    """Tickets in a SQLite file; safe across processes thanks to SQLite's own locking."""

    name = "local"

    def __init__(self, db_path: Path, base_url: str = "") -> None:
        self.db_path = db_path
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened (and switched to WAL) once, not once per call: a worker
        in a storm makes a dozen ticket calls per incident."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        if conn.in_transaction:  # a call that failed between BEGIN and ROLLBACK: start clean
            conn.execute("ROLLBACK")
        yield conn

    def _ref(self, n: int) -> TicketRef:
        key = f"LOCAL-{n}"
        return TicketRef(key=key, url=f"{self.base_url}/api/v1/tickets/{key}", tracker=self.name)

    @staticmethod
    def _n(key: str) -> int:
        prefix, _, num = key.partition("-")
        if prefix != "LOCAL" or not num.isdigit():
            raise TrackerError(f"not a local ticket key: {key!r}", retryable=False)
        return int(num)

    def _row(self, db: sqlite3.Connection, key: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM tickets WHERE n = ?", (self._n(key),)).fetchone()
        if row is None:
            raise TrackerError(f"ticket {key} does not exist", retryable=False)
        return row  # type: ignore[no-any-return]

    def find_open_by_incident(self, incident_id: str) -> TicketRef | None:
        with self._db() as db:
            row = db.execute(
                "SELECT n, status FROM tickets WHERE incident_label = ? ORDER BY n DESC",
                (incident_label(incident_id),),
            ).fetchall()
        for r in row:
            if r["status"] not in DONE_STATUSES:
                return self._ref(r["n"])
        return None

    @staticmethod
    def render(content: TicketContent) -> str:
        """The description as stored: Markdown, capped like Jira's so pages look alike everywhere."""
        return render(content.page, "markdown")

    def create_or_update(self, content: TicketContent) -> TicketRef:
        description = self.render(content)
        label = incident_label(content.incident_id)
        labels = sorted({*content.labels, label})
        links = [{"url": content.link_url, "title": content.link_title}] if content.link_url else []
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                existing = db.execute(
                    "SELECT * FROM tickets WHERE incident_label = ? AND status != 'Done' ORDER BY n DESC",
                    (label,),
                ).fetchone()
                if existing is not None:
                    merged = sorted({*json.loads(existing["labels"]), *labels})
                    db.execute(
                        "UPDATE tickets SET summary=?, description=?, priority=?, labels=?, assignee=?,"
                        " links=?, updated=? WHERE n=?",
                        (
                            content.summary,
                            description,
                            content.priority,
                            json.dumps(merged),
                            content.assignee or existing["assignee"],
                            json.dumps(links or json.loads(existing["links"])),
                            _now(),
                            existing["n"],
                        ),
                    )
                    n = int(existing["n"])
                else:
                    cur = db.execute(
                        "INSERT INTO tickets (incident_label, summary, description, priority, labels,"
                        " assignee,"
                        " status, links, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            label,
                            content.summary,
                            description,
                            content.priority,
                            json.dumps(labels),
                            content.assignee,
                            "To Do",
                            json.dumps(links),
                            _now(),
                            _now(),
                        ),
                    )
                    n = int(cur.lastrowid or 0)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._ref(n)

    def comment(self, key: str, body: str, dedup_key: str) -> bool:
        marker = dedup_marker(dedup_key)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = self._row(db, key)
                seen = db.execute(
                    "SELECT 1 FROM comments WHERE ticket_n = ? AND instr(body, ?) > 0", (row["n"], marker)
                ).fetchone()
                if seen is None:
                    db.execute(
                        "INSERT INTO comments (ticket_n, body, author, created) VALUES (?,?,?,?)",
                        (row["n"], f"{body}\n\n{marker}", "selfheal", _now()),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return seen is None

    def transition(self, key: str, status: str) -> bool:
        match = next((s for s in STATUSES if s.lower() == status.lower()), None)
        if match is None:
            raise TrackerError(
                f"no transition to {status!r}; available: {', '.join(STATUSES)}", retryable=False
            )
        with self._db() as db:
            row = self._row(db, key)
            if row["status"] == match:
                return False
            db.execute("UPDATE tickets SET status=?, updated=? WHERE n=?", (match, _now(), row["n"]))
        return True

    def update_page(self, key: str, content: TicketContent) -> None:
        description = self.render(content)
        with self._db() as db:
            row = self._row(db, key)
            if (row["summary"], row["description"]) != (content.summary, description):
                db.execute(
                    "UPDATE tickets SET summary=?, description=?, updated=? WHERE n=?",
                    (content.summary, description, _now(), row["n"]),
                )

    def set_priority(self, key: str, priority: str) -> None:
        with self._db() as db:
            row = self._row(db, key)
            db.execute("UPDATE tickets SET priority=?, updated=? WHERE n=?", (priority, _now(), row["n"]))

    def add_labels(self, key: str, labels: list[str]) -> None:
        with self._db() as db:
            row = self._row(db, key)
            merged = sorted({*json.loads(row["labels"]), *labels})
            db.execute(
                "UPDATE tickets SET labels=?, updated=? WHERE n=?", (json.dumps(merged), _now(), row["n"])
            )

    def attach(self, key: str, filename: str, data: bytes) -> bool:
        with self._db() as db:
            row = self._row(db, key)
            same = db.execute(
                "SELECT 1 FROM attachments WHERE ticket_n = ? AND filename = ? AND length(data) = ?",
                (row["n"], filename, len(data)),
            ).fetchone()
            if same is not None:
                return False
            db.execute(
                "INSERT INTO attachments (ticket_n, filename, data, created) VALUES (?,?,?,?)",
                (row["n"], filename, data, _now()),
            )
        return True

    def attachment(self, key: str, filename: str) -> bytes:
        """The newest attachment of that name on the ticket (the `/ui` page shows graphs inline)."""
        with self._db() as db:
            row = self._row(db, key)
            found = db.execute(
                "SELECT data FROM attachments WHERE ticket_n = ? AND filename = ? ORDER BY id DESC LIMIT 1",
                (row["n"], filename),
            ).fetchone()
        if found is None:
            raise TrackerError(f"ticket {key} has no attachment {filename!r}", retryable=False)
        return bytes(found["data"])

    def get(self, key: str) -> dict[str, Any]:
        """The ticket with its comments, for the API's ticket view and the CLI."""
        with self._db() as db:
            row = self._row(db, key)
            comments = db.execute(
                "SELECT body, author, created FROM comments WHERE ticket_n = ? ORDER BY id", (row["n"],)
            ).fetchall()
            files = db.execute(
                "SELECT filename, length(data) AS size FROM attachments WHERE ticket_n = ? ORDER BY id",
                (row["n"],),
            ).fetchall()
        return {
            "key": f"LOCAL-{row['n']}",
            "summary": row["summary"],
            "description": row["description"],
            "priority": row["priority"],
            "labels": json.loads(row["labels"]),
            "assignee": row["assignee"],
            "status": row["status"],
            "links": json.loads(row["links"]),
            "created": row["created"],
            "updated": row["updated"],
            "comments": [dict(c) for c in comments],
            "attachments": [dict(f) for f in files],
        }

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM tickets").fetchone()[0])
