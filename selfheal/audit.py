"""The audit trail: one structured `audit` log line per decision, pause, resume and refusal.

Who (the authenticated user, never a name from a request body), proven how (`token`, `oidc`,
`jira`), from where (the peer address), did what, and the outcome. Logged by the layer that knows
the outcome: the API for refusals before the service is reached, the services for the rest.
"""

from __future__ import annotations

from typing import Any

import structlog

from selfheal.auth import Principal

log = structlog.get_logger("selfheal.audit")


def audit(action: str, principal: Principal | None, origin: str, outcome: str, **fields: Any) -> None:
    """Record one audited action (`outcome`: accepted, refused, not_awaiting, failed)."""
    log.info(
        "audit",
        action=action,
        who=principal.name if principal else None,
        via=principal.via if principal else None,
        origin=origin,
        outcome=outcome,
        **fields,
    )
