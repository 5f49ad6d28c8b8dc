"""HTTP helpers shared by the API modules: bilingual errors and JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse


def error(status: int, code: str, zh: str, en: str, **extra: Any) -> JSONResponse:
    """An error answer: a machine code, a Chinese message and its English version."""
    return JSONResponse({"error": code, "message": zh, "message_en": en, **extra}, status_code=status)


def bad(code: str, zh: str, en: str, status: int = 400) -> JSONResponse:
    """:func:`error` with the status last (400 unless given)."""
    return error(status, code, zh, en)


async def json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None if it is not one."""
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
