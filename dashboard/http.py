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


async def bounded_json_object(request: Request, max_bytes: int, what_zh: str, what_en: str) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object of at most ``max_bytes``, or the error answer to send
    (413 too large, 400 not JSON, 400 not an object — naming ``what`` in both languages)."""
    import msgspec

    from dashboard.ingest import read_body

    body = await read_body(request, max_bytes)
    if body is None:
        return error(413, "too_large", "请求体过大", f"body larger than {max_bytes} bytes")
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return error(400, "unparseable", "请求体不是有效的 JSON", f"body is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return error(400, "schema", f"{what_zh}格式错误", f"the body must be a JSON object ({what_en})")
    return doc
