"""The model behind the `llm` investigator, built from `LlmSettings`.

OpenAI-compatible endpoints (OpenAI itself, vLLM, Ollama, LiteLLM, Azure's v1 API…) go through the
OpenAI chat-completions protocol with `base_url`; Anthropic through its own SDK. Building a model
opens no connection: the SDK clients connect on the first request. The SDK's own retries are off
by default because Temporal owns retries (each model request is an activity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr

from models.agent import LlmPrice
from models.settings import Section


class LlmSettings(Section):
    """The model behind the `llm` investigator: any OpenAI-compatible endpoint, or Anthropic."""

    provider: Literal["openai", "anthropic"] = "openai"
    model: str = "gpt-4o-mini"
    #: OpenAI-compatible base URL (vLLM, Ollama, LiteLLM, Azure…); None for the provider's own.
    base_url: str | None = None
    api_key: SecretStr | None = None
    #: Bounds per run (one per incident): model requests (steps), total tokens, tool calls, and
    #: characters per tool result.
    max_requests: int = Field(default=12, ge=1, le=100)
    max_total_tokens: int = Field(default=60_000, ge=1000)
    max_tool_calls: int = Field(default=30, ge=1, le=1000)
    max_tool_output_chars: int = Field(default=8_000, ge=500)
    timeout_seconds: float = Field(default=120, gt=0)
    #: USD per million input/output tokens, by model name; a model not listed has an unknown cost.
    prices: dict[str, LlmPrice] = Field(default_factory=dict)
    #: USD budgets (need the model's price): every LLM run of one incident, and of all incidents
    #: in one UTC day (read from the incident store when a run starts). None: no such budget.
    max_cost_per_incident: float | None = Field(default=None, gt=0)
    max_cost_per_day: float | None = Field(default=None, gt=0)


if TYPE_CHECKING:
    from pydantic_ai.models import Model


class LlmConfigError(Exception):
    """The LLM settings cannot make a model (the message names the field)."""


def build_model(llm: LlmSettings, *, sdk_retries: int = 0) -> Model:
    """A pydantic-ai model for `llm`; raises LlmConfigError when a required key is missing."""
    from pydantic_ai.settings import ModelSettings

    api_key = llm.api_key.get_secret_value() if llm.api_key is not None else None
    settings = ModelSettings(timeout=llm.timeout_seconds)
    if llm.provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        if not api_key:
            raise LlmConfigError("investigation.llm.api_key: required for provider 'anthropic'")
        client = AsyncAnthropic(
            api_key=api_key, base_url=llm.base_url, max_retries=sdk_retries, timeout=llm.timeout_seconds
        )
        return AnthropicModel(
            llm.model, provider=AnthropicProvider(anthropic_client=client), settings=settings
        )

    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if not api_key and llm.base_url is None:
        raise LlmConfigError(
            "investigation.llm.api_key: required for OpenAI (or set investigation.llm.base_url)"
        )
    client_openai = AsyncOpenAI(
        # Local OpenAI-compatible servers often need no key, but the SDK insists on one.
        api_key=api_key or "unused",
        base_url=llm.base_url,
        max_retries=sdk_retries,
        timeout=llm.timeout_seconds,
    )
    return OpenAIChatModel(llm.model, provider=OpenAIProvider(openai_client=client_openai), settings=settings)
