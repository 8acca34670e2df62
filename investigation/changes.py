"""Recent commits in watched repositories: "what changed just before the alert started?".

Each commit whose committer date falls in `[before - window, before]` becomes a `ChangeRef`
with its author, summary, changed paths and diff stats, scored by closeness to the alert start
(1 at the start, 0 at the window's edge) plus 1 when it touches one of the service's paths
(fnmatch globs; a plain directory also matches everything under it). The suspects kept also
carry their diff (bounded lines, redacted), so an investigator can quote the changed line an
error names, and the service whose paths they touch, so a change to a dependency is recognised.
Read-only: it reads history through `connectors.git.history` (one `git log` per repository plus
one `git show` per kept suspect, the worker's git environment and timeouts) and never touches
the work tree.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.git.history import GitHistory, NotARepository
from connectors.git.process import GitError
from models.evidence import ChangeRef, EvidenceSection
from pages.redact import cap, redact

#: Commits examined per repository at most, however busy the window was.
MAX_SCAN = 500
PATH_MATCH_BONUS = 1.0
_MAX_PATHS = 50
#: Diff lines kept per suspect change, and characters of each line and of the whole diff.
MAX_DIFF_LINES = 80
MAX_DIFF_LINE_CHARS = 300
MAX_DIFF_CHARS = 8000


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def path_matches(path: str, service_paths: Sequence[str]) -> bool:
    for pattern in service_paths:
        if not pattern:
            continue
        if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def recent_changes(
    repo_path: Path,
    *,
    name: str,
    before: datetime,
    window_seconds: float,
    service_paths: list[str],
    limit: int = 10,
    url_template: str = "",
    service: str = "",
    other_services: Mapping[str, Sequence[str]] | None = None,
    service_templates: Sequence[str] = (),
    diffs: bool = True,
) -> list[ChangeRef]:
    """Commits reachable from HEAD committed in the window before `before`, most suspect first.

    `url_template` may use `{sha}` and `{repo}`, e.g. `https://git.example/org/app/commit/{sha}`.
    Each change is attributed to `service` when it touches `service_paths`, else to the first of
    `other_services` (name → path globs) or of `service_templates` (globs with `{service}`) it
    touches (`owning_service`). The kept changes carry their diff unless `diffs` is false; one that
    cannot be read says so in its `diff`. Raises GitError (NotARepository for a missing or invalid
    repository); `gather_changes` turns them into evidence.
    """
    before = _aware(before)
    since = before - timedelta(seconds=window_seconds)
    history = GitHistory(repo_path)
    head = history.head()
    if head is None:
        return []
    changes: list[ChangeRef] = []
    for commit in history.commits(head, since=since, until=before, max_count=MAX_SCAN):
        committed = commit.committed_at
        if not since <= committed <= before:
            continue
        paths = sorted(commit.paths)
        score = change_score(committed, before, window_seconds, paths, service_paths)
        changes.append(
            ChangeRef(
                repo=name,
                sha=commit.sha,
                author=commit.author_name or commit.author_email,
                committed_at=committed,
                summary=commit.summary,
                paths=paths[:_MAX_PATHS],
                insertions=commit.insertions,
                deletions=commit.deletions,
                score=round(score, 4),
                touches_service=path_matches_any(paths, service_paths),
                selfheal_incident=_fix_trailer(commit.message),
                url=url_template.replace("{sha}", commit.sha).replace("{repo}", name),
                service=owning_service(
                    paths,
                    own=service,
                    own_paths=service_paths,
                    others=other_services or {},
                    templates=service_templates,
                ),
            )
        )
    changes.sort(key=lambda c: (-c.score, -c.committed_at.timestamp()))
    kept = changes[:limit]
    if diffs:
        for change in kept:
            change.diff = _diff(history, change.sha)
    return kept


def _diff(history: GitHistory, sha: str) -> str:
    try:
        return history.patch(sha, max_lines=MAX_DIFF_LINES, max_line_chars=MAX_DIFF_LINE_CHARS)
    except GitError as exc:  # one unreadable diff must not lose the other suspects
        return f"(diff unavailable: {str(exc)[:200]})"


def owning_service(
    paths: Sequence[str],
    *,
    own: str = "",
    own_paths: Sequence[str] = (),
    others: Mapping[str, Sequence[str]] | None = None,
    templates: Sequence[str] = (),
) -> str:
    """The service a change belongs to: `own` when it touches `own_paths`, else the first service
    of `others` whose globs it touches, else the name a `{service}` template reads off a path
    (`services/{service}/**` reads `payments` from `services/payments/app.py`); "" when none."""
    if own and path_matches_any(paths, own_paths):
        return own
    for name, globs in (others or {}).items():
        if path_matches_any(paths, globs):
            return name
    for template in templates:
        pattern = _template_regex(template)
        if pattern is None:
            continue
        for path in paths:
            found = pattern.match(path)
            if found:
                return found.group("service")
    return ""


def _template_regex(template: str) -> re.Pattern[str] | None:
    """`services/{service}/**` as a regex capturing the service; None without `{service}`."""
    if "{service}" not in template:
        return None
    head = template.split("{service}", 1)[0]
    parts = [re.escape(p) for p in head.split("*")]
    return re.compile("[^/]*".join(parts) + r"(?P<service>[A-Za-z0-9][A-Za-z0-9._-]*)(?:/|\.|$)")


_TRAILER = re.compile(r"^Selfheal-Incident:\s*(\S+)\s*$", re.MULTILINE)


def _fix_trailer(message: str) -> str:
    found = _TRAILER.search(message)
    return found.group(1)[:100] if found else ""


def change_score(
    committed: datetime,
    before: datetime,
    window_seconds: float,
    paths: Sequence[str],
    service_paths: Sequence[str],
) -> float:
    """Closeness to `before` in [0, 1], plus PATH_MATCH_BONUS when the commit touches the service's paths."""
    closeness = 1.0 - (before - committed).total_seconds() / window_seconds if window_seconds > 0 else 1.0
    score = max(0.0, min(1.0, closeness))
    if path_matches_any(paths, service_paths):
        score += PATH_MATCH_BONUS
    return score


def path_matches_any(paths: Sequence[str], service_paths: Sequence[str]) -> bool:
    return any(path_matches(p, service_paths) for p in paths)


def gather_changes(
    repos: dict[str, Path],
    *,
    before: datetime,
    window_seconds: float = 3600.0,
    service_paths: list[str] | None = None,
    limit: int = 10,
    url_templates: dict[str, str] | None = None,
    emails: bool = False,
    service: str = "",
    other_services: Mapping[str, Sequence[str]] | None = None,
    service_templates: Sequence[str] = (),
    depends_on: Sequence[str] = (),
    diffs: bool = True,
) -> EvidenceSection:
    """Recent changes across `repos` (name → local clone) as an evidence section; never raises.

    A repository that cannot be read makes the section `failed` unless others yielded changes,
    in which case the failure is noted in the message. `depends_on` (the service's configured
    dependencies) is recorded on the section for the investigators.
    """
    if not repos:
        return EvidenceSection(source="changes", status="skipped", message="no repositories configured")
    found: list[ChangeRef] = []
    errors: list[str] = []
    for name, path in repos.items():
        try:
            found.extend(
                recent_changes(
                    path,
                    name=name,
                    before=before,
                    window_seconds=window_seconds,
                    service_paths=service_paths or [],
                    limit=limit + 1,  # one more, to tell a full window from a cut one
                    url_template=(url_templates or {}).get(name, ""),
                    service=service,
                    other_services=other_services,
                    service_templates=service_templates,
                    diffs=diffs,
                )
            )
        except NotARepository:
            errors.append(f"{name}: {path} is not a git repository")
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    found.sort(key=lambda c: (-c.score, -c.committed_at.timestamp()))
    query = f"commits in the {window_seconds:g}s before {_aware(before).isoformat()}"
    message = "; ".join(errors)
    deps = list(depends_on)
    if errors and not found:
        return EvidenceSection(
            source="changes", status="failed", message=message, query=query, depends_on=deps
        )
    if not found:
        return EvidenceSection(
            source="changes", status="empty", message="no commits in the window", query=query, depends_on=deps
        )
    status = "truncated" if len(found) > limit else "ok"
    # Commit messages and author names are free text: a pasted token must not reach a ticket.
    kept = [
        c.model_copy(
            update={
                "summary": cap(redact(c.summary, emails=emails), 300),
                "author": cap(redact(c.author, emails=emails), 120),
                "diff": cap(redact(c.diff, emails=emails), MAX_DIFF_CHARS),
            }
        )
        for c in found[:limit]
    ]
    return EvidenceSection(
        source="changes", status=status, message=redact(message), query=query, changes=kept, depends_on=deps
    )
