"""``GET /api/events``: the Server-Sent-Events stream (FastAPI's native SSE support).

See :mod:`gateway.api.sse` for throttling, bounds and the slow-client policy, and
README.md in this folder for the message shapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway.api.auth import Viewer
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, responses
from gateway.api.jsonout import dumps_chunked
from gateway.api.sse import KILL_KEY, SseClient, TooManyClients, TooManyStreams

RETRY_MS = 3000


async def _client(request: Request, ctx: Ctx, who: Viewer) -> AsyncIterator[SseClient]:
    """Registers the client before the response starts, so a full house can still get a 503."""
    peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
    try:
        client = ctx.hub.connect(peer, who.name, request.scope.get(KILL_KEY))
    except TooManyStreams as e:
        raise ApiError(429, "too_many_streams", str(e), headers={"Retry-After": "10"}) from None
    except TooManyClients as e:
        raise ApiError(503, "too_many_clients", str(e), headers={"Retry-After": "10"}) from None
    try:
        yield client
    finally:
        ctx.hub.disconnect(client)


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["events"])

    @r.get(
        "/events",
        response_class=EventSourceResponse,
        summary="Live stream: snapshot, readings (throttled), alarm events, status, heartbeat",
        responses=responses(401, 403, 429, 503),
    )
    async def events(
        ctx: Ctx, client: Annotated[SseClient, Depends(_client)]
    ) -> AsyncIterator[ServerSentEvent]:
        try:
            first = True
            while True:
                item = await client.queue.get()
                if item is None:  # hub stopped or dropped us
                    return
                event, data = item
                if not isinstance(data, str):  # the snapshot: encoded off the loop
                    data = await asyncio.to_thread(dumps_chunked, data)
                yield ServerSentEvent(raw_data=data, event=event, retry=RETRY_MS if first else None)
                first = False
        finally:
            ctx.hub.disconnect(client)

    return r
