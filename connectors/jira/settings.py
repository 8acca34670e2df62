"""JiraSettings: where the Jira project is and how its tickets look, beside the code that uses them.

A module of its own so that the settings composition (selfheal.settings) and the webhook parser
can name the Jira section without loading the tracker and its `jira` client.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from models.settings import Section


class JiraSettings(Section):
    url: str = Field(min_length=1)
    project: str = Field(min_length=1)
    #: Jira Cloud: account e-mail + API token (basic). Server/DC: leave `user` empty, token is a PAT.
    user: str | None = None
    api_token: SecretStr | None = None
    #: None: detected (`*.atlassian.net` and `api.atlassian.com/ex/jira/...` URLs are Cloud, anything
    #: else asks `serverInfo`). Set it only to pin the deployment; the worker refuses to start when
    #: the server says otherwise.
    cloud: bool | None = None
    #: Where people open tickets (browse links). Defaults to `url`, except for a Cloud scoped-token
    #: URL (`https://api.atlassian.com/ex/jira/{cloudId}`), where it comes from serverInfo `baseUrl`.
    site_url: str | None = None
    #: 2: descriptions and comments in wiki markup (Server/DC, Cloud's v2). 3: Atlassian Document
    #: Format through REST v3, which only Jira Cloud has.
    api_version: int = Field(default=2, ge=2, le=3)
    #: How long Jira Cloud's search index may lag a create. Within it, a retried create whose answer
    #: was lost waits for the index (a retryable error) instead of creating a second issue.
    index_lag_seconds: float = Field(default=60.0, ge=0)
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=lambda: ["selfheal"])
    priority_map: dict[str, str] = Field(
        default_factory=lambda: {"critical": "Highest", "error": "High", "warning": "High", "info": "Medium"}
    )
    default_priority: str = "Medium"
    #: Priorities in rising order; a re-escalation moves one step up.
    priority_order: list[str] = Field(default_factory=lambda: ["Lowest", "Low", "Medium", "High", "Highest"])
    escalation_labels: list[str] = Field(default_factory=lambda: ["selfheal-escalated"])
    #: Who an escalated ticket is assigned to: an accountId on Cloud, a user name on Server/DC.
    escalation_assignee: str | None = None
    done_status: str = "Done"
    approved_status: str = "Approved"
    rejected_status: str = "Rejected"
    timeout_seconds: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _v3_is_cloud_only(self) -> JiraSettings:
        """REST v3 exists only on Cloud; pinning Server/DC with it cannot work."""
        if self.api_version == 3 and self.cloud is False:
            raise ValueError("api_version: 3 is Jira Cloud only; use 2 with cloud: false")
        return self
