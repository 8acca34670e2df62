"""CreateLedger: what the worker remembers about the issues it created, across activity retries.

Jira Cloud's `/search/jql` is not read-after-write consistent: an issue created a moment ago may be
missing from search for seconds. "Search by label before create" alone therefore duplicates the
ticket when a create's answer is lost (timeout, worker killed) and the retry searches too soon.
The ledger closes that gap without trusting the index:

- before `POST /issue` it records the attempt (incident id, time);
- after the answer it records the key, which a retry reads back with `GET /issue/{key}` (consistent);
- a retry that finds an attempt without a key (the answer was lost) and no issue in search, within
  `index_lag_seconds`, waits for the index (a retryable error) instead of creating a second issue.

It is a JSON file in the worker's data dir (one worker host's memory, surviving a restart), or
in-memory when no path is given. It never decides on its own: Jira is always asked first.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Entries older than this are dropped: by then Jira's index has long caught up.
_KEEP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class CreateRecord:
    attempted_at: float
    key: str | None = None


class CreateLedger:
    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, CreateRecord] = self._load()

    def _load(self) -> dict[str, CreateRecord]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            raw: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a torn or foreign file: the search before create still protects most cases
        out: dict[str, CreateRecord] = {}
        if isinstance(raw, dict):
            for incident, entry in raw.items():
                if isinstance(entry, dict) and isinstance(entry.get("attempted_at"), int | float):
                    key = entry.get("key")
                    out[str(incident)] = CreateRecord(float(entry["attempted_at"]), str(key) if key else None)
        return out

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {k: {"attempted_at": v.attempted_at, "key": v.key} for k, v in self._entries.items()}
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)

    def get(self, incident_id: str) -> CreateRecord | None:
        with self._lock:
            return self._entries.get(incident_id)

    def age(self, record: CreateRecord) -> float:
        return self._clock() - record.attempted_at

    def attempt(self, incident_id: str) -> None:
        """Record a create about to be sent (written before the request leaves)."""
        now = self._clock()
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if now - v.attempted_at < _KEEP_SECONDS}
            self._entries[incident_id] = CreateRecord(now, None)
            self._save()

    def created(self, incident_id: str, key: str) -> None:
        """Record the key Jira answered with."""
        with self._lock:
            before = self._entries.get(incident_id)
            self._entries[incident_id] = CreateRecord(before.attempted_at if before else self._clock(), key)
            self._save()

    def forget(self, incident_id: str) -> None:
        with self._lock:
            if self._entries.pop(incident_id, None) is not None:
                self._save()
