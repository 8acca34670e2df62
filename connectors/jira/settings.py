"""JiraSettings: where the Jira project is and how its tickets look, beside the code that uses them.

A module of its own so that the settings composition (selfheal.settings) and the webhook parser
can name the Jira section without loading the tracker and its `jira` client.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from models.settings import Section


class JiraSettings(Section):
    url: str = Field(min_length=1)
    project: str = Field(min_length=1)
    #: Jira Cloud: account e-mail + API token (basic). Server/DC: leave `user` empty, token is a PAT.
    user: str | None = None
    api_token: SecretStr | None = None
    cloud: bool = False
    #: 2: descriptions and comments in wiki markup (Server/DC, Cloud's v2). 3: Atlassian Document
    #: Format through REST v3 (Jira Cloud), where tables, links and code render natively.
    api_version: int = Field(default=2, ge=2, le=3)
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=lambda: ["selfheal"])
    priority_map: dict[str, str] = Field(
        default_factory=lambda: {"critical": "Highest", "error": "High", "warning": "High", "info": "Medium"}
    )
    default_priority: str = "Medium"
    #: Priorities in rising order; a re-escalation moves one step up.
    priority_order: list[str] = Field(default_factory=lambda: ["Lowest", "Low", "Medium", "High", "Highest"])
    escalation_labels: list[str] = Field(default_factory=lambda: ["selfheal-escalated"])
    escalation_assignee: str | None = None
    done_status: str = "Done"
    approved_status: str = "Approved"
    rejected_status: str = "Rejected"
    timeout_seconds: float = Field(default=15.0, gt=0)
