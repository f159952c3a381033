"""HTTP API, live duty console, SSE, auth and Prometheus metrics (docs/api.md).

See README.md in this folder. ``build_app(gw)`` makes the FastAPI app from a
:class:`GatewayFacade` (what the API reads and may do); ``ApiServer(gw)`` runs it as a
gateway component (uvicorn on a thread with its own event loop, see server.py).

The names below are imported on first use, so ``gateway.api.cli`` (``hazardgw tls`` /
``hazardgw token``) does not load FastAPI and uvicorn for every command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.api.app import build_app
    from gateway.api.auth import Principal, hash_token
    from gateway.api.context import ApiSettings
    from gateway.api.facade import GatewayFacade
    from gateway.api.server import ApiServer

_WHERE = {
    "build_app": "gateway.api.app",
    "Principal": "gateway.api.auth",
    "hash_token": "gateway.api.auth",
    "ApiSettings": "gateway.api.context",
    "GatewayFacade": "gateway.api.facade",
    "ApiServer": "gateway.api.server",
}

__all__ = ["ApiServer", "ApiSettings", "GatewayFacade", "Principal", "build_app", "hash_token"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
