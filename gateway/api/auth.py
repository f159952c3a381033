"""Bearer tokens and roles for the HTTP API (docs/api.md, issue 6 item 2).

Tokens live in the config only as SHA-256 hex digests (``api.tokens[].token_sha256``). A
request sends ``Authorization: Bearer <token>``; the digest of the presented token is
compared with *every* configured digest using :func:`hmac.compare_digest` (no early exit,
so the time taken does not tell which entry almost matched). Roles are ordered
``viewer < operator < admin``.

* no or malformed ``Authorization`` header, or an unknown token: **401** with
  ``WWW-Authenticate: Bearer`` and a JSON body ``{"error": "unauthorized", "detail": ...}``;
* a valid token whose role is too low: **403** ``{"error": "forbidden", "detail": ...}``.

The token itself is never logged or stored; only the token's configured *name* is used
(it becomes the ``user`` of operator actions in the alarm journal).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.errors import ApiError
from gateway.core.config import ApiToken

log = logging.getLogger(__name__)

ROLES: Final = {"viewer": 1, "operator": 2, "admin": 3}

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token from `api.tokens` (the config holds only its SHA-256). Roles: viewer < operator < admin.",
)


def hash_token(token: str) -> str:
    """The ``token_sha256`` value to put in the config for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's configured name and role."""

    name: str
    role: str

    def allows(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


class TokenAuth:
    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._entries = [(bytes.fromhex(t.token_sha256), Principal(t.name, t.role)) for t in tokens]

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


_NO_TOKENS = "no API tokens are configured (api.tokens); every /api route except /api/health needs one"


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency that authenticates the request and checks ``role``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        ctx = request.app.state.hazardgw
        auth: TokenAuth = ctx.auth
        if credentials is None or not credentials.credentials:
            ctx.metrics.auth_failures.labels("missing").inc()
            raise _unauthorized("send 'Authorization: Bearer <token>'" if auth.configured else _NO_TOKENS)
        if not auth.configured:
            ctx.metrics.auth_failures.labels("invalid").inc()
            raise _unauthorized(_NO_TOKENS)
        principal = auth.authenticate(credentials.credentials)
        if principal is None:
            ctx.metrics.auth_failures.labels("invalid").inc()
            client = request.client.host if request.client else "?"
            ctx.ratelog.warning(f"invalid-token:{client}", "API request with an invalid token from %s", client)
            raise _unauthorized("invalid token")
        if not principal.allows(role):
            ctx.metrics.auth_failures.labels("role").inc()
            raise ApiError(403, "forbidden", f"token {principal.name!r} has role {principal.role}; this needs {role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
