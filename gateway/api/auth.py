"""Bearer tokens and roles for the HTTP API (docs/api.md, issue 6 item 2, issue 25 item 2).

Tokens live in the config only as SHA-256 hex digests (``api.tokens[].token_sha256``). A
request sends ``Authorization: Bearer <token>``; the digest of the presented token is
compared with *every* configured digest using :func:`hmac.compare_digest` (no early exit,
so the time taken does not tell which entry almost matched). Roles are ordered
``viewer < operator < admin``. A token may carry ``expires``: after that it is refused
like an unknown one (401), and the first refusal of each token is logged once.

Authentication happens **before the request body is read** (issue 20): the guard
(gateway/api/guard.py) authenticates every ``/api/`` request except ``/api/health`` from
its headers, puts the :class:`Principal` in the request scope and answers 401 / 429
itself. The role dependencies here (``Viewer``, ``Operator``, ``Admin``) then only check
the role (403), authenticating themselves only for an app used without the guard.

* no or malformed ``Authorization`` header, an unknown or expired token: **401** with
  ``WWW-Authenticate: Bearer`` and a JSON body ``{"error": "unauthorized", "detail": ...}``;
* a valid token whose role is too low: **403** ``{"error": "forbidden", "detail": ...}``.

The token itself is never logged or stored; only the token's configured *name* is used
(it becomes the ``user`` of operator actions in the alarm journal and the audit log).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.errors import ApiError
from gateway.core.config import ApiToken

log = logging.getLogger(__name__)

ROLES: Final = {"viewer": 1, "operator": 2, "admin": 3}
PRINCIPAL_KEY: Final = "hazardgw.principal"  # request scope: the guard's authenticated Principal

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
    """Who is calling: the token's configured name and role (and when the token expires)."""

    name: str
    role: str
    expires_ns: int | None = None

    def allows(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


Failure = Literal["missing", "invalid", "expired"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    principal: Principal | None
    failure: Failure | None = None
    detail: str = ""


NO_TOKENS = "no API tokens are configured (api.tokens); every /api route except /api/health needs one"


class TokenAuth:
    def __init__(
        self, tokens: Sequence[ApiToken], timezone: str = "UTC", *, wall: Callable[[], int] = time.time_ns
    ) -> None:
        self._entries = [
            (bytes.fromhex(t.token_sha256), Principal(t.name, t.role, t.expires_ns(timezone))) for t in tokens
        ]
        self._wall = wall
        self._expired_logged: set[str] = set()

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unexpired ``token``, else None."""
        return self.check(token).principal

    def check(self, token: str | None) -> AuthResult:
        """Authenticate ``token`` (the bearer credential; None or "" when missing)."""
        if not token:
            return AuthResult(None, "missing", "send 'Authorization: Bearer <token>'" if self._entries else NO_TOKENS)
        if not self._entries:
            return AuthResult(None, "invalid", NO_TOKENS)
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        if found is None:
            return AuthResult(None, "invalid", "invalid token")
        if found.expires_ns is not None and self._wall() >= found.expires_ns:
            if found.name not in self._expired_logged:  # once per token (per app)
                self._expired_logged.add(found.name)
                at = dt.datetime.fromtimestamp(found.expires_ns / 1e9, dt.UTC)
                log.warning("API token %r expired at %s UTC; it is refused (make a new one: hazardgw token new)",
                            found.name, f"{at:%Y-%m-%d %H:%M:%S}")
            return AuthResult(None, "expired", f"token {found.name!r} has expired")
        return AuthResult(found)


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header value (None otherwise)."""
    if not authorization:
        return None
    scheme, _, cred = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    cred = cred.strip()
    return cred or None


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency that checks ``role`` (and authenticates when the guard did not)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        ctx = request.app.state.hazardgw
        principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
        if principal is None:  # a route outside /api/, or the app used without the guard
            result = ctx.auth.check(credentials.credentials if credentials is not None else None)
            if result.principal is None:
                ctx.metrics.auth_failures.labels(result.failure).inc()
                if result.failure == "invalid":
                    client = request.client.host if request.client else "?"
                    ctx.ratelog.warning(f"invalid-token:{client}", "API request with an invalid token from %s", client)
                raise unauthorized(result.detail)
            principal = result.principal
            request.scope[PRINCIPAL_KEY] = principal
        if not principal.allows(role):
            ctx.metrics.auth_failures.labels("role").inc()
            raise ApiError(403, "forbidden", f"token {principal.name!r} has role {principal.role}; this needs {role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
