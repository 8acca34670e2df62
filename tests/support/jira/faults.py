"""Misbehaviour on demand: `fail_next` (5xx, 429 with Retry-After), `hold_create`, and outages
in time (`outage_for`: every call answered 5xx; `stall_for`: every answer late)."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

from tests.support.jira.server import _Response


@dataclass
class _FailRule:
    status: int
    count: int
    retry_after: int
    method: str | None
    path: re.Pattern[str] | None


class HeldCreate:
    """One `POST /issue` that creates its issue, then stalls its HTTP response until released.

    That is what a worker killed mid-activity looks like from Jira's side: the ticket exists but the
    caller never learned its key.
    """

    def __init__(self) -> None:
        self.created = threading.Event()
        self.released = threading.Event()
        self.key: str | None = None

    def wait_created(self, timeout: float = 10.0) -> str:
        """Block until the held request has created its issue; return the key."""
        if not self.created.wait(timeout) or self.key is None:
            raise TimeoutError("no issue was created while the hold was armed")
        return self.key

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> HeldCreate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FaultsMixin:
    """Part of `JiraFake`: injected error answers, and a create whose response stalls."""

    _lock: threading.RLock
    _outage: tuple[float, int] | None
    _stall: tuple[float, float] | None

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        *,
        retry_after: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` REST calls (optionally only `method` / paths matching regex `path`)
        with `status`; 429 carries `Retry-After: retry_after` like Jira Cloud's rate limiter."""
        with self._lock:
            self._fail_rules.append(
                _FailRule(
                    status,
                    count,
                    retry_after,
                    method.upper() if method else None,
                    re.compile(path) if path else None,
                )
            )

    def outage_for(self, seconds: float, status: int = 503) -> None:
        """Answer every REST call with `status` for the next `seconds` (Jira down or failing)."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, status)

    def stall_for(self, seconds: float, delay: float) -> None:
        """For the next `seconds`, hold each request `delay` seconds before handling it: a client
        with a shorter timeout gives up, yet the request still takes effect (a create whose answer
        is lost), as with an overloaded Jira."""
        with self._lock:
            self._stall = (time.monotonic() + seconds, delay)

    def _outage_rule(self) -> _FailRule | None:
        if self._outage is None or time.monotonic() >= self._outage[0]:
            return None
        return _FailRule(self._outage[1], 0, 1, None, None)

    def _stall_if_stalling(self) -> None:
        with self._lock:
            stall = self._stall
        if stall is not None and time.monotonic() < stall[0]:
            time.sleep(stall[1])

    def hold_create(self) -> HeldCreate:
        """Arm a hold for the next `POST /issue`: the issue is created, the response stalls until
        `release_create()` (or the returned handle's `release()` / context exit)."""
        held = HeldCreate()
        with self._lock:
            self._holds.append(held)
        return held

    def release_create(self) -> None:
        """Let every held create answer, and disarm holds that have not fired yet."""
        with self._lock:
            holds = self._holds + self._active_holds
            self._holds = []
            self._active_holds = []
        for held in holds:
            held.release()

    @staticmethod
    def _injected_failure(rule: _FailRule) -> _Response:
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if rule.status == 429:
            headers["Retry-After"] = str(rule.retry_after)
            headers["X-RateLimit-Limit"] = "100"
            headers["X-RateLimit-Remaining"] = "0"
            message = "Rate limit exceeded."
        elif rule.status == 503:
            message = "Service Unavailable"
            headers["Retry-After"] = str(rule.retry_after)
        else:
            message = "Internal server error"
        body = json.dumps({"errorMessages": [message], "errors": {}}).encode()
        return _Response(rule.status, body, headers)
