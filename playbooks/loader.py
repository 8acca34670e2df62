"""Reading playbook files: YAML with line numbers, validation, duplicate names and precedence ties.

Every problem is one `file:line: field.path: message` line so an author (or CI) can jump to it.
The YAML is read with ruamel's round-trip loader only for its line marks; the data is converted to
plain Python before pydantic sees it, so YAML node subclasses never leak into validation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from playbooks.matcher import PlaybookSet, find_ties
from playbooks.render import check_playbook, loc_str
from playbooks.schema import Playbook, PlaybookSpec, is_template

#: The playbooks shipped with selfheal (known patterns); `include_library=False` leaves them out.
LIBRARY_DIR = Path(__file__).resolve().parent / "library"


class PlaybookError(Exception):
    """Playbooks that cannot be loaded; `errors` are `file:line: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class LintReport:
    playbooks: list[Playbook] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def library_dir() -> Path:
    """The library directory, relative to the working directory when inside it (shorter messages)."""
    try:
        return LIBRARY_DIR.relative_to(Path.cwd())
    except ValueError:
        return LIBRARY_DIR


def playbook_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """`*.yaml`/`*.yml` directly inside each directory (not recursive), or the file itself."""
    files: list[Path] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix in (".yaml", ".yml") and p.is_file() and p.name[0] != "."
            )
        elif path.is_file():
            found = [path]
        else:
            errors.append(f"{path}: no such file or directory")
            continue
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files, errors


def _plain(node: Any) -> Any:
    """ruamel round-trip nodes → plain dict/list/str/int/float/bool/None (timestamps as ISO strings)."""
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, Mapping):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, date):  # unquoted YAML timestamps: keep them JSON-serialisable
        return node.isoformat()
    return node


def _line(root: Any, loc: Iterable[str | int]) -> int:
    """The line of the deepest part of `loc` present in the YAML (parts it lacks are skipped)."""
    line = 1
    node = root
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _loc(error: ErrorDetails) -> tuple[str | int, ...]:
    """The error's location as YAML keys: drop the tags pydantic adds for the `rollback` union."""
    loc = tuple(error["loc"])
    if len(loc) > 1 and loc[0] == "rollback" and loc[1] in ("auto", "steps"):
        loc = (loc[0], *loc[2:])
    return loc


def _where(path: Path, line: int, loc: tuple[str | int, ...], message: str) -> str:
    return f"{path}:{line}: {loc_str(loc)}: {message}" if loc else f"{path}:{line}: {message}"


def _kube_namespaces(spec: PlaybookSpec, root: Any) -> tuple[tuple[str, int], ...]:
    """The literal namespaces of kube steps and Flux syncs, with their lines (templated ones are
    checked at run time)."""
    found = []
    rollback = [] if isinstance(spec.rollback, str) else spec.rollback
    for phase, steps in (
        ("fix", spec.fix),
        ("test", spec.test),
        ("deploy", spec.deploy),
        ("rollback", rollback),
    ):
        for i, step in enumerate(steps):
            action = step.kube or step.kube_wait or (step.gitops_sync.flux if step.gitops_sync else None)
            if action is not None and action.namespace is not None and not is_template(action.namespace):
                kind = "kube" if step.kube is not None else "kube_wait"
                found.append((action.namespace, _line(root, (phase, i, kind, "namespace"))))
    return tuple(found)


def load_file(path: Path) -> tuple[Playbook | None, list[str]]:
    """One playbook file → the validated playbook, or the problems found in it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"{path}:1: cannot read: {exc.strerror or exc}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, [f"{path}:1: not UTF-8 text"]
    try:
        root = YAML(typ="rt", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [f"{path}:{mark.line + 1 if mark else 1}: invalid YAML: {problem}"]
    if not isinstance(root, CommentedMap):
        return None, [f"{path}:1: a playbook is a YAML mapping (apiVersion, kind, name, match, ...)"]
    try:
        spec = PlaybookSpec.model_validate(_plain(root))
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            loc = _loc(error)
            errors.append(_where(path, _line(root, loc), loc, _message(error)))
        return None, list(dict.fromkeys(errors))
    problems, alert_fields = check_playbook(spec)
    errors = [_where(path, _line(root, loc), loc, message) for loc, message in problems]
    if errors:
        return None, list(dict.fromkeys(errors))
    playbook = Playbook(
        spec=spec,
        path=path,
        digest=hashlib.sha256(raw).hexdigest()[:12],
        name_line=_line(root, ("name",)),
        match_line=_line(root, ("match",)),
        repo_line=_line(root, ("repo",)),
        alert_fields=alert_fields,
        kube_namespaces=_kube_namespaces(spec, root),
    )
    return playbook, []


def _in_library(path: Path) -> bool:
    return path.resolve().is_relative_to(LIBRARY_DIR)


def _unknown_repo(playbook: Playbook, known_repos: Collection[str] | None) -> str:
    """Why the playbook's repo cannot be used ('' when it can, or when repos are not checked)."""
    repo = playbook.spec.repo
    if known_repos is None or repo is None or repo in known_repos:
        return ""
    configured = ", ".join(sorted(known_repos)) or "none"
    return f"{repo!r} is not configured (remediation.repos: {configured})"


def _outside_namespaces(playbook: Playbook, namespaces: Collection[str] | None) -> list[tuple[int, str]]:
    """(line, message) for each literal kube namespace outside `kube.namespaces` (none when
    namespaces are not checked)."""
    if namespaces is None:
        return []
    allowed = ", ".join(sorted(namespaces)) or "none"
    return [
        (line, f"namespace {ns!r} is not in kube.namespaces (allowed: {allowed})")
        for ns, line in playbook.kube_namespaces
        if ns not in namespaces
    ]


def _duplicates(playbooks: list[Playbook]) -> list[str]:
    first: dict[str, Playbook] = {}
    errors = []
    for playbook in playbooks:
        other = first.setdefault(playbook.name, playbook)
        if other is not playbook:
            errors.append(
                f"{playbook.path}:{playbook.name_line}: name: duplicate playbook name {playbook.name!r}"
                f" (also in {other.path}:{other.name_line})"
            )
    return errors


def _ties(playbooks: list[Playbook]) -> list[str]:
    errors = []
    for a, b in find_ties(playbooks):
        if a.name == b.name:  # already reported as a duplicate
            continue
        match = a.spec.match
        errors.append(
            f"{a.path}:{a.match_line}: match: playbook {a.name!r} ties with {b.name!r}"
            f" ({b.path}:{b.match_line}):"
            f" same alertname {match.alertname!r}, priority {match.priority} and {len(match.matchers)}"
            " matcher(s), and the matchers are not provably disjoint; change a priority or add a matcher"
            " that tells them apart"
        )
    return errors


def check_paths(
    paths: Iterable[Path],
    *,
    known_repos: Collection[str] | None = None,
    kube_namespaces: Collection[str] | None = None,
) -> LintReport:
    """Everything lint reports: per-file problems, duplicate names and precedence ties.

    With `known_repos`, a `repo:` outside it is an error, except in the library, whose playbooks
    are simply unavailable until their repo is configured. With `kube_namespaces`, so is a kube
    step's literal namespace outside that allow-list.
    """
    files, errors = playbook_files(paths)
    report = LintReport(errors=errors)
    for file in files:
        playbook, problems = load_file(file)
        report.errors.extend(problems)
        if playbook is None:
            continue
        report.playbooks.append(playbook)
        unknown = _unknown_repo(playbook, known_repos)
        if unknown and not _in_library(file):
            report.errors.append(f"{file}:{playbook.repo_line}: repo: {unknown}")
        if not _in_library(file):
            outside = _outside_namespaces(playbook, kube_namespaces)
            report.errors.extend(f"{file}:{line}: namespace: {message}" for line, message in outside)
    report.errors.extend(_duplicates(report.playbooks))
    report.errors.extend(_ties(report.playbooks))
    return report


def lint_paths(
    paths: list[Path],
    *,
    known_repos: Collection[str] | None = None,
    kube_namespaces: Collection[str] | None = None,
) -> list[str]:
    """`file:line: message` for every problem in the playbooks at `paths` (files or directories)."""
    return check_paths(paths, known_repos=known_repos, kube_namespaces=kube_namespaces).errors


def load_playbooks(
    dirs: list[Path],
    include_library: bool = True,
    *,
    known_repos: Collection[str] | None = None,
    kube_namespaces: Collection[str] | None = None,
) -> PlaybookSet:
    """The configured playbook directories (plus the library) as a PlaybookSet; PlaybookError if any is bad.

    Precedence ties are lint errors but do not stop loading: matching then picks by name and says so.
    With `known_repos`, a library playbook whose repo is not configured is skipped (matching says
    so); in the configured directories it is an error. `kube_namespaces` (the `kube.namespaces`
    allow-list) treats a kube step's literal namespace outside it the same way.
    """
    files, errors = playbook_files([library_dir(), *dirs] if include_library else list(dirs))
    playbooks: list[Playbook] = []
    skipped: list[tuple[Playbook, str]] = []
    for file in files:
        playbook, problems = load_file(file)
        errors.extend(problems)
        if playbook is None:
            continue
        unknown = _unknown_repo(playbook, known_repos)
        outside = _outside_namespaces(playbook, kube_namespaces)
        if (unknown or outside) and _in_library(file):
            skipped.append((playbook, unknown or outside[0][1]))
        elif unknown or outside:
            errors.extend([f"{file}:{playbook.repo_line}: repo: {unknown}"] if unknown else [])
            errors.extend(f"{file}:{line}: namespace: {message}" for line, message in outside)
        else:
            playbooks.append(playbook)
    errors.extend(_duplicates([*playbooks, *(p for p, _ in skipped)]))
    if errors:
        raise PlaybookError(errors)
    return PlaybookSet(playbooks, skipped=skipped)


def default_paths(dirs: Iterable[Path | str], include_library: bool = True) -> list[Path]:
    """What `lint` checks without arguments: the library (unless disabled) and the configured dirs."""
    extra = [Path(os.fspath(d)) for d in dirs]
    return [library_dir(), *extra] if include_library else extra
