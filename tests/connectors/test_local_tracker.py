"""The local tracker's attachments as the `/ui` page reads them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import TicketContent, TrackerError
from connectors.local_tracker import LocalTracker
from pages.document import Document


def test_attachment_reads_back_the_newest_of_that_name(tmp_path: Path) -> None:
    tracker = LocalTracker(tmp_path / "t.db")
    key = tracker.create_or_update(TicketContent(incident_id="inc-1", summary="s", page=Document())).key
    assert tracker.attach(key, "inc-1-graph-0.png", b"first")
    assert tracker.attach(key, "inc-1-graph-0.png", b"second, longer")
    assert tracker.attachment(key, "inc-1-graph-0.png") == b"second, longer"
    with pytest.raises(TrackerError) as missing:
        tracker.attachment(key, "inc-1-graph-1.png")
    assert not missing.value.retryable
    with pytest.raises(TrackerError):
        tracker.attachment("LOCAL-99", "inc-1-graph-0.png")
    with pytest.raises(TrackerError):
        tracker.attachment("OPS-1", "inc-1-graph-0.png")
