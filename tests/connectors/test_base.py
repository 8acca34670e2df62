"""connectors.base: every connector's error is a ConnectorError carrying `retryable`, with its default."""

from __future__ import annotations

import pytest

from connectors.alertmanager import AlertmanagerError
from connectors.base import ConnectorError, TrackerError
from connectors.commands import CommandError
from connectors.git.process import GitError
from connectors.http_action import HttpActionError
from connectors.loki import LokiError
from connectors.prometheus import PrometheusError
from connectors.traces import TracesError


@pytest.mark.parametrize(
    "kind", [AlertmanagerError, HttpActionError, LokiError, PrometheusError, TracesError]
)
def test_retryable_is_said_explicitly(kind: type[ConnectorError]) -> None:
    for retryable in (True, False):
        err = kind("boom", retryable=retryable)
        assert isinstance(err, ConnectorError)
        assert err.retryable is retryable and str(err) == "boom"


def test_defaults_stay_per_connector() -> None:
    assert TrackerError("x").retryable is True
    assert CommandError("x").retryable is False
    assert GitError("x").retryable is False
    assert GitError("x", retryable=True).retryable is True


def test_git_error_still_hides_credentials() -> None:
    err = GitError("push to https://user:tok@example.com/r.git failed")
    assert isinstance(err, ConnectorError) and "tok" not in str(err)
