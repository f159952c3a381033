"""HTTP API, live duty console, SSE, auth and Prometheus metrics (docs/api.md).

See README.md in this folder. ``build_app(gw)`` makes the FastAPI app from a
:class:`GatewayFacade` (what the API reads and may do); ``ApiServer(gw)`` runs it as a
gateway component (uvicorn in the same event loop).
"""

from gateway.api.app import build_app
from gateway.api.auth import Principal, hash_token
from gateway.api.context import ApiSettings
from gateway.api.facade import GatewayFacade
from gateway.api.server import ApiServer

__all__ = ["ApiServer", "ApiSettings", "GatewayFacade", "Principal", "build_app", "hash_token"]
