"""FastAPI dependencies that authenticate the caller.

    from services.ingest.auth.dependencies import CurrentUser

    @router.get("/api/thing")
    async def thing(user: CurrentUser) -> ...:   # user.id (UUID), user.name

Credentials: `X-API-Key`, or `Authorization: Bearer <API key | Firebase ID token>`; WebSockets may also
pass `?token=`. Missing or invalid credentials answer 401 `{"code": "unauthorized", "message"}` (Comfy
Cloud's style, on every route). In local development mode a request without credentials is the local user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket

from services.ingest.auth.firebase import extract_credentials
from services.ingest.auth.service import AuthenticatedUser, Authenticator
from services.ingest.errors import Unauthorized

__all__ = ["AuthenticatedUser", "CurrentUser", "current_user", "websocket_user"]


def _authenticator(request: Request | WebSocket) -> Authenticator:
    return request.app.state.authenticator


async def current_user(request: Request) -> AuthenticatedUser:
    credentials = extract_credentials(request.headers)
    user = await _authenticator(request).authenticate(credentials)
    if user is None:
        if credentials.api_key or credentials.bearer:
            raise Unauthorized("Invalid credentials")
        raise Unauthorized("Authentication required: send an API key in X-API-Key or Authorization: Bearer")
    request.state.user = user
    return user


async def websocket_user(websocket: WebSocket) -> AuthenticatedUser | None:
    """The caller of a WebSocket handshake (headers or ?token=), or None: the caller then refuses it."""
    credentials = extract_credentials(websocket.headers, websocket.query_params)
    return await _authenticator(websocket).authenticate(credentials)


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
