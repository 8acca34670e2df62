"""Request bodies read within a size limit, and the one error body every route answers with.

Shared by the app's validation handler and the webhooks, which read raw bytes themselves so that
an oversized body is refused before it is parsed.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [{"path": _json_path(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors]


class PayloadTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes whether or not Content-Length is honest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
