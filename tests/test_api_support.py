"""Shared pieces of the API tests (tests/test_api_*.py): a site config, tokens, SSE parsing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from gateway.api import hash_token
from gateway.config import Config
from gateway.core.models import Reading

VIEWER, OPERATOR, ADMIN = "tok-viewer-1f3a", "tok-operator-9c2e", "tok-admin-77d1"
H_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
H_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
H_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
TOKENS = [
    {"name": "screen", "role": "viewer", "token_sha256": hash_token(VIEWER)},
    {"name": "ops-zhao", "role": "operator", "token_sha256": hash_token(OPERATOR)},
    {"name": "admin", "role": "admin", "token_sha256": hash_token(ADMIN)},
]


def site(store: Path, *, api: dict[str, Any] | None = None, extra_tags: list[dict[str, Any]] | None = None) -> Config:
    """Two hazard sources, a Cl2 detector (gas: not shelvable), a pressure, a tag with '/' in its id."""
    return Config.model_validate(
        {
            "site": {"code": "91430900TEST0001XX", "name": "API test site"},
            "hazard_sources": [
                {"code": "HS-001", "name": "Chlorine tank farm", "grade": 2},
                {"code": "HS-002", "name": "LPG spheres", "grade": 3},
            ],
            "tags": [
                {"id": "GT-101", "name": "Cl2 north", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2",
                 "unit": "mg/m3", "range": [0, 20], "stale_after": "1h",
                 "alarms": {"hh": {"limit": 2.0, "priority": 1, "latch": True},
                            "h": {"limit": 1.0, "priority": 2, "deadband": 0.1}}},
                {"id": "PT-201", "name": "Sphere pressure", "hazard_source": "HS-002", "kind": "pressure",
                 "unit": "MPa", "range": [0, 2.5], "stale_after": "1h",
                 "alarms": {"h": {"limit": 1.4, "priority": 2}, "l": {"limit": 0.1, "priority": 3}}},
                {"id": "AI/7", "name": "analog with a slash", "kind": "analog", "unit": "%", "range": [0, 100],
                 "stale_after": "1h", "alarms": {"h": {"limit": 90, "priority": 3}}},
                *(extra_tags or []),
            ],
            "api": {"listen": "127.0.0.1:0", "tokens": TOKENS, **(api or {})},
            "store": {"path": str(store)},
        }
    )


def reading(tag: str, value: float | None, quality: str = "good", ts: int | None = None) -> Reading:
    return Reading(tag, value, ts if ts is not None else time.time_ns(), quality)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, parsed JSON data) for each SSE message of a streaming httpx response."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def test_hash_token_is_the_sha256_hex_the_config_holds() -> None:
    import hashlib

    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert TOKENS[0]["token_sha256"] == hashlib.sha256(VIEWER.encode()).hexdigest()
