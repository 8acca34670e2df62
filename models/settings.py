"""The base every settings section derives from, wherever the section lives.

Each integration keeps its settings model next to its code; the app's `Settings` composes them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A settings section: unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid")
