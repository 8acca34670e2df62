"""What every CLI command group shares: the root `--config`, the one-line error exit, settings.

Its own module so the command groups (`selfheal.cli`, `selfheal.playbooks_cli`) import it and
never each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from selfheal.settings import ConfigError, Settings, load_settings

out = Console()
err = Console(stderr=True)


class State:
    """The root options, set by the root callback before any command runs."""

    config: Path | None = None


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and the exit code (2 for usage and configuration)."""
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(State.config, **overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
