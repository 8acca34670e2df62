"""The one error type every connector raises: a message and whether another attempt can help.

Temporal owns retries, and an activity can only decide well if every connector answers the same
question the same way: `retryable`. Each connector keeps its own subclass (and its own default),
so a caller may still catch `LokiError` or `TrackerError` by name, or any of them as
`ConnectorError`.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A call to an external system failed; `retryable` says whether another attempt can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
