"""The dispatcher's errors and how they are rendered: `{"code", "message"}` (a Cloud-only API).

* comfy_cloud.errors.AppError
  - BadRequest: CatalogueHashMismatch
  - NotFound: InstanceNotRegistered (the instance must register again), JobNotFound
  - Conflict: UnknownCatalogue (PUT the catalogue, then register; also answers `{"error": ...}`)
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import JSONResponse

from comfy_cloud.errors import AppError, BadRequest, Conflict, NotFound


class CatalogueHashMismatch(BadRequest):
    """The catalogue's content does not hash to the name it was PUT under (see fleet.catalogue_hash)."""


class InstanceNotRegistered(NotFound):
    """Unknown or lost instance: register again."""


class JobNotFound(NotFound):
    """No such job."""


class UnknownCatalogue(Conflict):
    """unknown catalogue"""


def error_code(exc: AppError) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


async def render_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    body = {"code": error_code(exc), "message": exc.message}
    if isinstance(exc, UnknownCatalogue):
        body["error"] = "unknown catalogue"  # the shape the services' contract names
    return JSONResponse(body, status_code=exc.status_code)
