"""The LLM investigator for `make eval`: the same agent as production, offline, on recorded evidence."""

from __future__ import annotations

import asyncio

from connectors.llm import build_model
from investigation.agent import investigate_offline
from models.incident import IncidentView
from models.investigation import DiagnoseResult, Investigation
from models.plan import MatchResult
from models.remediation import InvestigationRequest
from selfheal.clients import llm_run_config
from selfheal.settings import Settings
from tests.evals.harness import Investigator, builtin


def llm_investigator(settings: Settings) -> Investigator:
    """Starts from the builtin investigation, as the incident workflow does."""
    model = build_model(settings.investigation.llm)
    config = llm_run_config(settings)

    def run(view: IncidentView, match: MatchResult | None, diagnose: list[DiagnoseResult]) -> Investigation:
        prior = builtin(view, match, diagnose)
        request = InvestigationRequest(view=view, match=match, prior=prior)
        return asyncio.run(investigate_offline(request, model, config))

    return run
