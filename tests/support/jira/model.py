"""What the fake Jira knows: its catalog (priorities, issue types, resolutions, the workflow, the
fields) and the state of its issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]


API = r"/rest/api/(?:2|latest)"


#: REST v3 (Jira Cloud): the same resources, rich text (descriptions, comment bodies) as ADF.
API3 = r"/rest/api/3"


PRIORITIES: dict[str, str] = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}


ISSUE_TYPES: dict[str, str] = {"Bug": "1", "Task": "3"}


RESOLUTIONS: dict[str, str] = {"Done": "10000", "Won't Do": "10001"}


STATUS_CATEGORIES: dict[str, JsonDict] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}


NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."


ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."


@dataclass(frozen=True)
class WorkflowStatus:
    """A status of the single workflow, and the global transition that leads to it."""

    name: str
    id: str
    category: str
    transition_id: str
    resolution: str | None = None


DEFAULT_WORKFLOW: tuple[WorkflowStatus, ...] = (
    WorkflowStatus("To Do", "10000", "new", "11"),
    WorkflowStatus("In Progress", "3", "indeterminate", "21"),
    WorkflowStatus("Approved", "10002", "indeterminate", "41"),
    WorkflowStatus("Rejected", "10003", "indeterminate", "51"),
    WorkflowStatus("Done", "10001", "done", "31", resolution="Done"),
)


@dataclass(frozen=True)
class _FieldDef:
    id: str
    name: str
    clause_names: tuple[str, ...]
    schema: JsonDict | None
    navigable: bool = True
    orderable: bool = True
    searchable: bool = True
    rendered: bool = True


FIELDS: tuple[_FieldDef, ...] = (
    _FieldDef("summary", "Summary", ("summary",), {"type": "string", "system": "summary"}),
    _FieldDef("description", "Description", ("description",), {"type": "string", "system": "description"}),
    _FieldDef("labels", "Labels", ("labels",), {"type": "array", "items": "string", "system": "labels"}),
    _FieldDef("priority", "Priority", ("priority",), {"type": "priority", "system": "priority"}),
    _FieldDef("status", "Status", ("status",), {"type": "status", "system": "status"}, orderable=False),
    _FieldDef(
        "statusCategory", "Status Category", ("statusCategory",), None, orderable=False, rendered=False
    ),
    _FieldDef("resolution", "Resolution", ("resolution",), {"type": "resolution", "system": "resolution"}),
    _FieldDef(
        "resolutiondate",
        "Resolved",
        ("resolutiondate", "resolved"),
        {"type": "datetime", "system": "resolutiondate"},
        orderable=False,
    ),
    _FieldDef("assignee", "Assignee", ("assignee",), {"type": "user", "system": "assignee"}),
    _FieldDef("reporter", "Reporter", ("reporter",), {"type": "user", "system": "reporter"}),
    _FieldDef("issuetype", "Issue Type", ("issuetype", "type"), {"type": "issuetype", "system": "issuetype"}),
    _FieldDef("project", "Project", ("project",), {"type": "project", "system": "project"}, orderable=False),
    _FieldDef(
        "created",
        "Created",
        ("created", "createdDate"),
        {"type": "datetime", "system": "created"},
        orderable=False,
    ),
    _FieldDef(
        "updated",
        "Updated",
        ("updated", "updatedDate"),
        {"type": "datetime", "system": "updated"},
        orderable=False,
    ),
    _FieldDef(
        "statuscategorychangedate",
        "Status Category Changed",
        ("statusCategoryChangedDate",),
        {"type": "datetime", "system": "statuscategorychangedate"},
        orderable=False,
    ),
    _FieldDef(
        "comment", "Comment", ("comment",), {"type": "comments-page", "system": "comment"}, navigable=False
    ),
    _FieldDef(
        "attachment",
        "Attachment",
        ("attachments",),
        {"type": "array", "items": "attachment", "system": "attachment"},
        navigable=False,
        searchable=False,
    ),
    _FieldDef(
        "issuekey",
        "Key",
        ("id", "issue", "issuekey", "key"),
        None,
        orderable=False,
        searchable=False,
        rendered=False,
    ),
)


#: What PUT/POST may write; anything else is "not on the appropriate screen, or unknown" in Jira.
_WRITABLE = {"summary", "description", "labels", "priority", "assignee", "reporter", "project", "issuetype"}


@dataclass
class _Comment:
    id: int
    author: str
    body: str | JsonDict
    created: datetime
    updated: datetime
    #: Who last edited it (Jira's `updateAuthor`); None: never edited, the author.
    update_author: str | None = None


@dataclass
class _Attachment:
    id: int
    filename: str
    author: str
    created: datetime
    data: bytes
    mime_type: str


@dataclass
class _Issue:
    id: int
    key: str
    project: str
    issuetype: str
    summary: str
    description: str | JsonDict | None
    labels: list[str]
    priority: str
    status: str
    reporter: str
    created: datetime
    assignee: str | None = None
    resolution: str | None = None
    resolutiondate: datetime | None = None
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    status_changed: datetime = field(default_factory=lambda: datetime.now(UTC))
    comments: list[_Comment] = field(default_factory=list)
    attachments: list[_Attachment] = field(default_factory=list)
    remote_links: list[JsonDict] = field(default_factory=list)


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
