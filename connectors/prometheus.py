"""Prometheus queries for diagnosis and for verifying a fix: "did the error ratio stay low?".

Queries go through `prometheus_api_client.PrometheusConnect` with its own retries switched off:
Temporal owns retries, and a verification loop must see a failed poll as what it is. Conditions
such as `< 0.01` are parsed, never evaluated, by `playbooks.condition` (NaN satisfies none).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel
from urllib3.util.retry import Retry

from connectors.base import ConnectorError
from playbooks.condition import Condition, ConditionError
from playbooks.condition import parse_condition as _parse_condition

_STATUS = re.compile(r"HTTP Status Code (\d{3})")
#: Statuses worth another attempt besides 5xx (Prometheus answers 503 while starting or overloaded).
_RETRYABLE_STATUS = frozenset({408, 429})


class PrometheusError(ConnectorError):
    """A query failed; `retryable` is False for a query Prometheus rejected (bad PromQL)."""


def parse_condition(text: str) -> Condition:
    """Parse a check's condition (playbooks.condition); a bad one is a non-retryable PrometheusError."""
    try:
        return _parse_condition(text)
    except ConditionError as exc:
        raise PrometheusError(str(exc), retryable=False) from exc


class RangeSeries(BaseModel):
    labels: dict[str, str]
    samples: list[tuple[float, float]]


class VerifyResult(BaseModel):
    """The outcome of a verification: every poll as (unix time, value or None when empty)."""

    ok: bool
    samples: list[tuple[float, float | None]]
    reason: str


class PrometheusClient:
    """One Prometheus server; every call is a single HTTP request."""

    def __init__(self, url: str, timeout: float = 10.0, *, headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._headers = headers
        self._client = PrometheusConnect(
            url=self.url,
            headers=headers,
            retry=Retry(total=0, raise_on_status=False),
            session=self._session,
            timeout=timeout,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ queries

    def query(self, promql: str, *, at: datetime | None = None) -> list[float]:
        """The values of an instant query: one per series of a vector, or the scalar's value.

        `at` evaluates it at that moment instead of now (within the server's retention)."""
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else None
        result = self._call("query", lambda: self._client.custom_query(promql, params=params))
        return _instant_values(promql, result)

    def series_labels(self, promql: str) -> list[dict[str, str]]:
        """The label sets of an instant vector's samples, in the order Prometheus returned them
        (a scalar has none). For params read from a query (`from: query`)."""
        result = self._call("query", lambda: self._client.custom_query(promql))
        if not isinstance(result, list) or (len(result) == 2 and not isinstance(result[0], dict)):
            return []
        labels: list[dict[str, str]] = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
                raise PrometheusError(f"{promql!r}: unexpected result item {item!r:.200}", retryable=False)
            labels.append({str(k): str(v) for k, v in item.get("metric", {}).items()})
        return labels

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float
    ) -> list[RangeSeries]:
        """Every series of a range query with its (unix time, value) samples."""
        result = self._call(
            "query_range",
            lambda: self._client.custom_query_range(promql, start_time=start, end_time=end, step=str(step)),
        )
        series: list[RangeSeries] = []
        for item in result or []:
            samples = [(float(t), _to_float(promql, v)) for t, v in item.get("values", [])]
            series.append(RangeSeries(labels=dict(item.get("metric", {})), samples=samples))
        return series

    @staticmethod
    def check(condition: str, values: Sequence[float]) -> bool:
        """True when there is at least one value and every value satisfies the condition."""
        return bool(values) and all(parse_condition(condition).holds(v) for v in values)

    def healthy(self) -> bool:
        """Whether Prometheus is up and ready to serve queries (`/-/ready`)."""
        try:
            response = self._session.get(f"{self.url}/-/ready", headers=self._headers, timeout=self.timeout)
        except requests.RequestException:
            return False
        return response.status_code == 200

    # ------------------------------------------------------------------------------ verification

    def verify(
        self,
        query: str,
        condition: str,
        hold_for: float,
        timeout: float,
        poll_interval: float = 5.0,
        *,
        on_sample: Callable[[float, float | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> VerifyResult:
        """Poll until the condition has held continuously for `hold_for` seconds, or `timeout` passes.

        Any poll that fails the condition (including an empty result, or a transient query error)
        restarts the hold window. A query Prometheus rejects outright raises at once: waiting cannot
        fix a typo. `on_sample` runs after each poll, e.g. to heartbeat the activity.
        """
        cond = parse_condition(condition)
        if hold_for < 0 or timeout <= 0 or poll_interval <= 0:
            raise PrometheusError("hold_for must be >= 0, timeout and poll_interval > 0", retryable=False)
        started = clock()
        started_wall = time.time()
        deadline = started + timeout
        held_since: float | None = None
        longest_hold = 0.0
        samples: list[tuple[float, float | None]] = []
        last_problem = "no poll completed"
        while True:
            now = clock()
            value: float | None = None
            passed = False
            try:
                values = self.query(query)
            except PrometheusError as exc:
                if not exc.retryable:
                    raise
                last_problem = f"query failed: {exc}"
            else:
                if not values:
                    last_problem = "query returned no data (empty result): condition not met"
                else:
                    failing = [v for v in values if not cond.holds(v)]
                    value = failing[0] if failing else values[0]
                    passed = not failing
                    if failing:
                        last_problem = f"value {value:g} does not satisfy {cond}"
            # Sample times on the same clock as the hold window, so the two always agree.
            samples.append((started_wall + (now - started), value))
            if on_sample is not None:
                on_sample(samples[-1][0], value)
            if passed:
                held_since = now if held_since is None else held_since
                longest_hold = max(longest_hold, now - held_since)
                if now - held_since >= hold_for:
                    return VerifyResult(
                        ok=True,
                        samples=samples,
                        reason=f"{query} {cond} held for {now - held_since:.1f}s (wanted {hold_for:g}s)",
                    )
            else:
                held_since = None
            remaining = deadline - clock()
            if remaining <= 0:
                if held_since is not None:
                    reason = (
                        f"held only {longest_hold:.1f}s of {hold_for:g}s when the {timeout:g}s timeout came"
                    )
                else:
                    reason = (
                        f"did not hold for {hold_for:g}s within {timeout:g}s"
                        f" (longest hold {longest_hold:.1f}s); last poll: {last_problem}"
                    )
                return VerifyResult(ok=False, samples=samples, reason=f"{query} {cond} {reason}")
            wait = poll_interval
            if held_since is not None:
                wait = min(wait, max(held_since + hold_for - clock(), 0.0))
            sleep(min(wait, remaining))

    # --------------------------------------------------------------------------------- plumbing

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """Run one client call, mapping its failures onto PrometheusError."""
        try:
            return call()
        except PrometheusApiClientException as exc:
            text = str(exc)
            m = _STATUS.search(text)
            status = int(m.group(1)) if m else 0
            retryable = status >= 500 or status in _RETRYABLE_STATUS
            raise PrometheusError(f"prometheus {what}: {text[:500]}", retryable=retryable) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PrometheusError(f"prometheus {what}: {type(exc).__name__}: {exc}", retryable=True) from exc
        except requests.RequestException as exc:
            raise PrometheusError(f"prometheus {what}: {type(exc).__name__}: {exc}", retryable=False) from exc
        except (ValueError, KeyError) as exc:  # a 200 that is not Prometheus' JSON: a proxy page
            raise PrometheusError(
                f"prometheus {what}: unexpected answer ({type(exc).__name__}: {exc})", retryable=False
            ) from exc


def _to_float(promql: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError) as exc:
        raise PrometheusError(f"{promql!r} returned a non-numeric value {raw!r}", retryable=False) from exc


def _instant_values(promql: str, result: Any) -> list[float]:
    """Values of an instant query result: a vector is a list of series, a scalar is [time, "value"]."""
    if result is None:
        return []
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [_to_float(promql, result[1])]  # scalar (or string, which _to_float refuses)
    values: list[float] = []
    for item in result:
        if not isinstance(item, dict):
            raise PrometheusError(f"{promql!r}: unexpected result item {item!r}", retryable=False)
        if "value" not in item:
            raise PrometheusError(
                f"{promql!r} returned a range vector; use an instant vector (e.g. wrap it in avg_over_time)",
                retryable=False,
            )
        values.append(_to_float(promql, item["value"][1]))
    return values
