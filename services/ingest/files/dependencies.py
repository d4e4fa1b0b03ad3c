"""The object storage of the running app (`IngestState.storage`, opened by the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from comfy_cloud.errors import ServiceUnavailable
from comfy_cloud.storage import Storage
from services.ingest.state import get_state


async def get_storage(connection: HTTPConnection) -> Storage:
    # async: FastAPI would run a plain `def` dependency in a worker thread.
    storage = getattr(get_state(connection), "storage", None)
    if storage is None:
        raise ServiceUnavailable("object storage is not configured")
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]
