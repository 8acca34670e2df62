"""Which playbooks would handle an alert, and the steps each would run, without running anything:
what `selfheal playbooks match/plan`, the API and the MCP tools show.

Playbooks load as the worker loads them (configured dirs, the library, repo names checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from models.incident import IncidentView, WebhookAlert
from models.plan import MatchResult, RemediationPlan
from playbooks.loader import load_playbooks
from playbooks.matcher import PlaybookSet
from selfheal.settings import Settings

#: Alerts one question may cover (an incident keeps at most 500; its first ones are matched).
MAX_ALERTS = 100


class AlertPlaybooks(BaseModel):
    """One alert: the playbooks that apply in precedence order (each rendered unless it has
    `from: query` params), or why none does."""

    match: MatchResult
    #: For a candidate whose params come from a query: its steps with `<name>` in their place
    #: (for reading; the real plan renders at run time). By playbook name.
    previews: dict[str, RemediationPlan] = Field(default_factory=dict)


class PlaybookMatches(BaseModel):
    incident_id: str | None = None
    alerts: list[AlertPlaybooks]


def load_configured(
    settings: Settings, extra_dirs: Sequence[Path] = (), *, library: bool = True
) -> tuple[PlaybookSet, dict[str, str]]:
    """The playbooks and template settings the worker would use; raises `PlaybookError`."""
    section = settings.remediation
    playbooks = load_playbooks(
        [*section.playbook_dirs, *extra_dirs],
        include_library=section.include_library and library,
        known_repos=list(section.repos),
        kube_namespaces=settings.kube.namespaces if settings.kube else None,
    )
    return playbooks, section.template_settings(settings.public_url)


def match_alerts(
    settings: Settings, alerts: Sequence[WebhookAlert], incident_id: str = ""
) -> list[AlertPlaybooks]:
    """Each alert's match, with a preview for every candidate that waits on run-time params."""
    playbooks, ctx = load_configured(settings)
    out = []
    for alert in alerts[:MAX_ALERTS]:
        result = playbooks.match(alert, incident_id=incident_id, settings_ctx=ctx)
        previews = {}
        for candidate in result.candidates():
            if candidate.plan is None:
                preview = playbooks.preview(candidate, alert, settings_ctx=ctx)
                if preview is not None:
                    previews[candidate.playbook] = preview
        out.append(AlertPlaybooks(match=result, previews=previews))
    return out


def incident_alerts(view: IncidentView) -> list[WebhookAlert]:
    """The incident's alerts as Alertmanager sent them (what the matcher reads)."""
    return [
        WebhookAlert(
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            startsAt=a.startsAt,
            endsAt=a.endsAt,
            generatorURL=a.generatorURL,
            fingerprint=a.fingerprint,
        )
        for a in view.alerts[:MAX_ALERTS]
    ]
