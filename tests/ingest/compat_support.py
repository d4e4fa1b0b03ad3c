"""Fixtures for the ComfyUI-compatible routes (files, userdata, catalogue, frontend).

The app under test holds exactly these routers over real components: PostgreSQL (a fresh database per
test), object storage (local files, or GCS on the emulator), and real authentication by API key. Each
`Caller` is a user with a key and an httpx client that sends it, so cross-user isolation is tested through
the same door a client uses.
"""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from comfy_cloud.errors import AppError
from comfy_cloud.storage import LocalStorage, Storage
from database.engine import Database
from database.repositories.users import UserRepository
from services.ingest.auth.service import Authenticator
from services.ingest.catalogues import CatalogueCache
from services.ingest.config import IngestSettings
from services.ingest.errors import error_body, error_code, style_of

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from integration.support.gcs_emulator import GCSEmulator, start_gcs_emulator  # noqa: E402

BUCKET = "comfy-cloud-files-test"


@dataclass
class Caller:
    id: uuid.UUID
    name: str
    client: httpx.AsyncClient

    async def upload(
        self, data: bytes, filename: str = "probe.png", route: str = "/api/upload/image", **fields: str
    ) -> httpx.Response:
        return await self.client.post(route, files={"image": (filename, data, "image/png")}, data=fields)


def png(width: int = 4, height: int = 3, color: tuple[int, ...] = (10, 200, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color).save(out, format="PNG")
    return out.getvalue()


def build_app(database: Database, storage: Storage, settings: IngestSettings | None = None) -> FastAPI:
    from services.ingest import catalogue, files, userdata
    from services.ingest.frontend import mount_frontend

    app = FastAPI()
    app.state.authenticator = Authenticator(database, key_cache_ttl=0)
    app.state.ingest = SimpleNamespace(
        database=database,
        storage=storage,
        settings=settings or IngestSettings(database_url=database.url),
        catalogues=CatalogueCache(database),
    )
    for router in (files.router, userdata.router, catalogue.router):
        app.include_router(router)

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        # What the real app does for the errors our routes leave to it (authentication's 401).
        status = exc.status_code
        return JSONResponse(
            error_body(style_of(request), status, exc.message, error_code(status, exc)), status
        )

    mount_frontend(app)
    return app


MakeCaller = Callable[..., Awaitable[Caller]]


@pytest.fixture
def local_storage(tmp_path: Path) -> Storage:
    return LocalStorage(tmp_path / "objects")


@pytest.fixture
def storage(local_storage: Storage) -> Storage:
    """The storage the app uses; a test module can override this fixture (e.g. with GCS)."""
    return local_storage


@pytest.fixture
def app(db: Database, storage: Storage) -> FastAPI:
    return build_app(db, storage)


@pytest.fixture
async def make_caller(db: Database, app: FastAPI) -> AsyncIterator[MakeCaller]:
    clients: list[httpx.AsyncClient] = []

    async def make(name: str | None = None, **client_options: Any) -> Caller:
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        async with db.session() as session:
            users = UserRepository(session)
            user = await users.get_or_create(name)
            key = (await users.create_api_key(user.id)).key
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8080",
            headers={"X-API-Key": key},
            **client_options,
        )
        clients.append(client)
        return Caller(user.id, name, client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def alice(make_caller: MakeCaller) -> Caller:
    return await make_caller("alice")


@pytest.fixture
async def bob(make_caller: MakeCaller) -> Caller:
    return await make_caller("bob")


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as client:
        yield client


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    emulator = start_gcs_emulator(tmp_path_factory.mktemp("gcs-files"), buckets=[BUCKET])
    try:
        yield emulator
    finally:
        emulator.stop()


def signing_credentials():  # type: ignore[no-untyped-def]
    """A throwaway service-account key: lets GCSStorage sign V4 URLs for the emulator."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "comfy-cloud-test",
        "private_key_id": "test",
        "private_key": pem,
        "client_email": "signer@comfy-cloud-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return service_account.Credentials.from_service_account_info(info)
