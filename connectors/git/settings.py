"""The settings of a repository selfheal may change (`remediation.repos.<name>`).

Apart from the git code so that loading settings never imports GitPython (the CLI's start-up, and
`selfheal demo` on a machine without git, which must still say what is missing in one line).
"""

from __future__ import annotations

from pathlib import Path

from models.settings import Section


class RepoSettings(Section):
    """A git repository selfheal may change: a local clone it owns, pushing to `remote`."""

    path: Path
    remote: str = "origin"
    base_branch: str = "main"
