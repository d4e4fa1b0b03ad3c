"""Who may call: API keys (X-API-Key, Bearer, ?token= on sockets), Firebase ID tokens, and local
development mode. 401 answers are Comfy Cloud's {code, message} on every route."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from comfy_cloud.config import ConfigError, load_settings
from database.repositories.users import UserRepository
from integration.support.firebase_emulator import PROJECT_ID, create_user
from services.ingest.config import IngestSettings
from tests.ingest.core.conftest import PROMPT, Caller, Env, MakeEnv, serve

ROUTES = [
    ("GET", "/api/prompt"),
    ("POST", "/api/prompt"),
    ("GET", "/queue"),
    ("POST", "/api/interrupt"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/00000000-0000-4000-8000-000000000000"),
    ("POST", "/api/jobs/cancel"),
    ("GET", "/api/job/00000000-0000-4000-8000-000000000000/status"),
    ("GET", "/history"),
    ("GET", "/api/history_v2"),
]


def _is_401(response: Any) -> bool:
    body = response.json()
    return (
        response.status_code == 401
        and set(body) == {"code", "message"}
        and body["code"] == "unauthorized"
        and response.headers.get("www-authenticate") == "Bearer"
    )


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_no_credentials_is_401_in_cloud_style(env: Env, method: str, path: str) -> None:
    response = await env.client().request(method, path, json={"prompt": PROMPT})
    assert _is_401(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "cc_" + "x" * 43},
        {"Authorization": "Bearer cc_nope"},
        {"Authorization": "Bearer not-a-firebase-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "comfyui-unknown"},
    ],
)
async def test_invalid_credentials_are_401(env: Env, alice: Caller, headers: dict[str, str]) -> None:
    response = await env.client(**headers).get("/api/jobs")
    assert _is_401(response)


async def test_api_key_header_spellings(env: Env, alice: Caller) -> None:
    await alice.client.post("/api/prompt", json={"prompt": PROMPT})
    for headers in (
        {"X-API-KEY": alice.key},
        {"Authorization": f"Bearer {alice.key}"},
        {"authorization": f"bearer {alice.key}"},
    ):
        response = await env.client(**headers).get("/api/prompt")
        assert response.json() == {"exec_info": {"queue_remaining": 1}}, headers


async def test_api_key_lookups_are_cached(env: Env, alice: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = UserRepository.get_by_api_key

    async def counting(self: UserRepository, key: str) -> Any:
        nonlocal calls
        calls += 1
        return await original(self, key)

    monkeypatch.setattr(UserRepository, "get_by_api_key", counting)
    for _ in range(5):
        assert (await alice.client.get("/api/prompt")).status_code == 200
    wrong = env.client(**{"X-API-Key": "cc_wrong"})
    for _ in range(3):
        assert (await wrong.get("/api/prompt")).status_code == 401
    assert calls == 2  # one lookup per key, hits and misses alike


async def test_revoked_key_without_cache(make_env: MakeEnv) -> None:
    async with make_env(api_key_cache_ttl=0) as env:
        caller = await env.caller()
        assert (await caller.client.get("/api/prompt")).status_code == 200
        async with env.db.session() as session:
            users = UserRepository(session)
            key = await users.create_api_key(caller.id)
            await users.revoke_api_key(caller.id, key.id)
        assert _is_401(await env.client(**{"X-API-Key": key.key}).get("/api/prompt"))


async def test_dev_mode_serves_the_local_user(make_env: MakeEnv) -> None:
    async with make_env(ingest_dev_mode=True, ingest_dev_user="me") as env:
        anonymous = env.client()
        response = await anonymous.post("/api/prompt", json={"prompt": PROMPT})
        assert response.status_code == 200
        async with env.db.session() as session:
            local = await UserRepository(session).get_by_name("me")
        assert local is not None
        jobs = (await anonymous.get("/api/jobs")).json()["jobs"]
        assert [job["id"] for job in jobs] == [response.json()["prompt_id"]]
        # With credentials: that user, not the local one; wrong credentials are still refused.
        caller = await env.caller()
        assert (await caller.client.get("/api/jobs")).json()["jobs"] == []
        assert _is_401(await env.client(**{"X-API-Key": "cc_wrong"}).get("/api/jobs"))
        async with (
            serve(env.app) as port,
            websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws,
        ):
            status = json.loads(await ws.recv())
            assert status["data"]["status"] == {"exec_info": {"queue_remaining": 1}}


def test_dev_mode_refuses_a_public_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/db")
    monkeypatch.setenv("INGEST_DEV_MODE", "1")
    monkeypatch.setenv("HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="INGEST_DEV_MODE_FORCE"):
        load_settings(IngestSettings)
    monkeypatch.setenv("INGEST_DEV_MODE_FORCE", "1")
    assert load_settings(IngestSettings).ingest_dev_mode
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        monkeypatch.setenv("HOST", host)
        monkeypatch.setenv("INGEST_DEV_MODE_FORCE", "0")
        assert load_settings(IngestSettings).ingest_dev_mode, host


async def test_firebase_id_tokens(make_env: MakeEnv, firebase_auth_env: str) -> None:
    async with make_env(firebase_project_id=PROJECT_ID) as env:
        person = await create_user(firebase_auth_env, display_name="Ada")
        client = env.client(Authorization=f"Bearer {person.id_token}")
        first = await client.post("/api/prompt", json={"prompt": PROMPT})
        assert first.status_code == 200, first.text
        assert (await client.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 1}}
        async with env.db.session() as session:
            users = [u async for u in _users_with_uid(session, person.uid)]
        assert len(users) == 1 and users[0].email == person.email
        assert _is_401(await env.client(Authorization=f"Bearer {person.id_token}x").get("/api/prompt"))
        async with serve(env.app) as port:
            url = f"ws://127.0.0.1:{port}/ws?token={person.id_token}"
            async with websockets.connect(url, open_timeout=10) as ws:
                status = json.loads(await ws.recv())
                assert status["data"]["status"] == {"exec_info": {"queue_remaining": 1}}


async def _users_with_uid(session: Any, uid: str) -> Any:
    from sqlalchemy import select

    from database.models import User

    for user in await session.scalars(select(User).where(User.firebase_uid == uid)):
        yield user
