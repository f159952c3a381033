"""JSON for big responses without holding the gateway's loop (or the interpreter lock) for long.

``json.dumps`` of a large document runs in C from start to end: it holds the interpreter
lock all the time, so no other thread runs and, on the gateway's loop, nothing else
either (``GET /api/tags?recent=120`` for 500 tags is 1.7 MB: ~60 ms). :func:`json_response`
encodes on a worker thread, item by item (:func:`dumps_chunked`), so the lock changes hands
between items and the gateway's loop waits at most one switch interval (5 ms).

Pass data that nothing else changes while it is encoded (the fresh dicts and lists a
handler builds from the live state, not the live state itself).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import Response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps_chunked(obj: Any, depth: int = 2) -> str:
    """``json.dumps(obj)`` (compact, no NaN), encoded per element down to ``depth`` levels."""
    if depth <= 0:
        return _dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(_dumps(str(k)) + ":" + dumps_chunked(v, depth - 1) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps_chunked(v, depth - 1) for v in obj) + "]"
    return _dumps(obj)


async def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded on a worker thread with :func:`dumps_chunked` (for big payloads)."""
    body = await asyncio.to_thread(lambda: dumps_chunked(data).encode("utf-8"))
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")
