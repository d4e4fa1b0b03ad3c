"""What the ingest routes share: the resources created by the app's lifespan, and request dependencies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.broadcast.events import JOB_STATUS, JobEvent
from comfy_cloud.broadcast.postgres import inline_notification
from comfy_cloud.secrets import Sealer
from comfy_cloud.storage import Storage
from database.engine import Database
from database.repositories.broadcast import Notification
from services.ingest.auth.service import Authenticator
from services.ingest.catalogues import CatalogueCache
from services.ingest.config import IngestSettings

if TYPE_CHECKING:
    from comfy_cloud.clients.dispatcher import DispatcherClient
    from services.ingest.ws.hub import Hub

log = logging.getLogger(__name__)


@dataclass
class IngestState:
    settings: IngestSettings
    database: Database
    broadcaster: Broadcaster
    catalogues: CatalogueCache
    dispatcher: DispatcherClient
    authenticator: Authenticator
    hub: Hub
    sealer: Sealer | None
    storage: Storage | None = None  # None when STORAGE_URL cannot be opened (file routes answer 503)

    async def publish_status(self, user_id: uuid.UUID, jobs: Iterable[tuple[uuid.UUID, str]]) -> None:
        """Tell every ingest replica that these jobs changed state (`cc.job_status`). Best effort: the
        database already holds the truth, events only make sockets learn it sooner."""
        events = _status_events(user_id, jobs)
        if not events:
            return
        try:
            await self.broadcaster.publish(events)
        except Exception:
            log.warning("could not publish %d job status event(s)", len(events), exc_info=True)

    def status_notification(
        self, user_id: uuid.UUID, jobs: Iterable[tuple[uuid.UUID, str]]
    ) -> Notification | None:
        """publish_status() as NOTIFYs that a statement of ours sends itself, committed with its write
        (one round trip fewer); None unless the broadcaster is PostgreSQL on our database."""
        return inline_notification(
            self.broadcaster, self.settings.database_url, _status_events(user_id, jobs)
        )


def _status_events(user_id: uuid.UUID, jobs: Iterable[tuple[uuid.UUID, str]]) -> list[JobEvent]:
    return [
        JobEvent(user_id=str(user_id), job_id=str(job_id), type=JOB_STATUS, data={"status": status})
        for job_id, status in jobs
    ]


def get_state(connection: HTTPConnection) -> IngestState:
    return connection.app.state.ingest


async def _state(connection: HTTPConnection) -> IngestState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on
    # every request for what is an attribute lookup.
    return get_state(connection)


State = Annotated[IngestState, Depends(_state)]


async def db_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession]:
    async with get_state(connection).database.session() as session:
        yield session


# Committed when the endpoint returns, before the response is sent (scope="function").
DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]


def ms(moment: Any) -> int | None:
    """A datetime as epoch milliseconds (the unit of every ComfyUI timestamp)."""
    return None if moment is None else int(moment.timestamp() * 1000)
