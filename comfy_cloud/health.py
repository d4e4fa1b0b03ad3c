"""`GET /health` (the process is alive) and `GET /ready` (its dependencies answer), for every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

Check = Callable[[], Awaitable[bool]]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="each dependency's check, by name")


def health_router(checks: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """`checks` is called per request, so checks can depend on state set up by the lifespan."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "a dependency is not ready"}},
    )
    async def ready() -> JSONResponse:
        named = dict(checks())
        results = await asyncio.gather(*(_run(check) for check in named.values()))
        status = dict(zip(named, results, strict=True))
        code = 200 if all(results) else 503
        return JSONResponse({"ready": code == 200, "checks": status}, status_code=code)

    return router


async def _run(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=2.0)
    except Exception:
        return False
