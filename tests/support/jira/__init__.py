"""An in-memory Jira (REST API v2) on a real socket, for tests that drive the real `jira` client.

Mocks of the `jira` library only prove we call the library; this fake proves the requests it sends
are ones Jira accepts. It rejects what Jira rejects (bad project, priority or label, a newline in a
summary, an unknown transition, JQL it cannot parse, an attachment upload without the XSRF header,
bad credentials) with Jira's status codes and error JSON, and it can misbehave on demand
(`fail_next`, `hold_create`) and send Jira's outgoing webhooks (`add_comment_as`, `transition_as`).

Usage::

    with JiraFake(users={"bot": "token"}) as fake:
        client = JIRA(fake.url, basic_auth=("bot", "token"))

The default workflow has global transitions (named like their target status) to "To Do" (category
new), "In Progress", "Approved", "Rejected" (indeterminate: still open, as in LocalTracker) and
"Done" (done, resolution Done); pass `workflow=` for another. Real Jira also sends webhooks for
changes made through the REST API, i.e. by our own bot: `configure_webhook(..., api_events=True)`.

Limits, on purpose: no screens or permissions beyond authentication, JQL restricted to the clauses
in `SearchMixin._JQL_FIELDS` with AND/OR/NOT/parentheses, `=`, `!=`, `IN`, `NOT IN`, `IS [NOT] EMPTY`, `~` on
text, date comparisons and `currentUser()`.

Layout, one concern a module: `fake` (the `JiraFake` class: state, lifecycle, routing), `server`
(the HTTP server and Jira's error answers), `model` (catalog and issue state), `users`
(authentication), `metadata`, `issues`, `comments`, `transitions`, `links`, `attachments`,
`search` with `jql` (the parser), `adf` (ADF validation), `webhooks` (shaped as the documented
payloads in `payloads/`), `faults` (`fail_next`,
`hold_create`).
"""

from tests.support.jira.adf import ADF_REQUIRED, adf_problem, adf_text, as_adf
from tests.support.jira.fake import JiraFake
from tests.support.jira.faults import HeldCreate
from tests.support.jira.jql import JQLError, parse_jql
from tests.support.jira.model import DEFAULT_WORKFLOW, WorkflowStatus
from tests.support.jira.webhooks import WebhookDelivery, WebhookReceiver, payload

__all__ = [
    "ADF_REQUIRED",
    "DEFAULT_WORKFLOW",
    "HeldCreate",
    "JQLError",
    "JiraFake",
    "WebhookDelivery",
    "WebhookReceiver",
    "WorkflowStatus",
    "adf_problem",
    "adf_text",
    "as_adf",
    "parse_jql",
    "payload",
]
