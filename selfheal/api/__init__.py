"""The HTTP API: Alertmanager webhook, incidents, decisions, the Jira webhook, health and metrics.

One router per resource, assembled by `app.create_app`; callers keep `from selfheal.api import
create_app`.
"""

from selfheal.api.app import create_app

__all__ = ["create_app"]
