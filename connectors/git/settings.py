"""The settings of a repository selfheal may change (`remediation.repos.<name>`).

Apart from the git code so that loading settings never imports GitPython (the CLI's start-up, and
`selfheal demo` on a machine without git, which must still say what is missing in one line).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from models.settings import Section


class RepoSettings(Section):
    """A git repository selfheal may change: a local clone it owns, pushing to `remote`."""

    path: Path
    #: Read-only paths this repository's sandboxed test commands need beyond the system directories
    #: (a language runtime or tool cache outside /usr, e.g. ~/.pyenv/versions/3.11.7). Nothing else of
    #: the worker's filesystem is visible to them; a path holding the data dir, config or home is refused.
    sandbox_paths: list[Path] = Field(default_factory=list)
    remote: str = "origin"
    base_branch: str = "main"
    #: The repository's own test command (an argv list, no shell), run sandboxed with no network by
    #: the coding agent when the service's `remediation.services.<name>.test` has no command step.
    test_command: list[str] = Field(default_factory=list)
    test_timeout_seconds: float = Field(default=300, gt=0)
