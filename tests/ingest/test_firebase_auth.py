"""Firebase ID-token verification against the real Firebase Auth emulator, and credential extraction."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.datastructures import Headers, QueryParams

from integration.support.firebase_emulator import (
    PROJECT_ID,
    create_user,
    decode_claims,
    delete_user,
    disable_user,
    mint_expired_token,
    mint_tampered_token,
    mint_wrong_project_token,
    revoke_tokens,
    rewrite_claims,
    sign_in,
)
from services.ingest.auth.firebase import (
    Credentials,
    FirebaseIdentity,
    FirebaseTokenVerifier,
    extract_credentials,
)

OUR_KEY = "cc_" + "A" * 43
CLOUD_KEY = "comfyui-0123456789abcdef"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


# ---------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, None, Credentials()),
        ({"X-API-Key": OUR_KEY}, None, Credentials(api_key=OUR_KEY)),
        ({"x-api-key": CLOUD_KEY}, None, Credentials(api_key=CLOUD_KEY)),
        ({"X-API-KEY": f"  {CLOUD_KEY} "}, None, Credentials(api_key=CLOUD_KEY)),
        ({"X-API-Key": ""}, None, Credentials()),
        ({"Authorization": f"Bearer {OUR_KEY}"}, None, Credentials(api_key=OUR_KEY)),
        ({"authorization": f"bearer {CLOUD_KEY}"}, None, Credentials(api_key=CLOUD_KEY)),
        ({"Authorization": f"Bearer {JWT}"}, None, Credentials(bearer=JWT)),
        ({"AUTHORIZATION": f"BEARER   {JWT}  "}, None, Credentials(bearer=JWT)),
        ({"Authorization": "Bearer "}, None, Credentials()),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None, Credentials()),
        ({"Authorization": JWT}, None, Credentials()),
        ({}, {"token": OUR_KEY}, Credentials(api_key=OUR_KEY)),
        ({}, {"token": CLOUD_KEY, "clientId": "abc"}, Credentials(api_key=CLOUD_KEY)),
        ({}, {"token": JWT}, Credentials(bearer=JWT)),
        ({}, {"token": ""}, Credentials()),
        ({}, {"clientId": "abc"}, Credentials()),
        # A header beats the query string for the same field; different fields are both reported.
        ({"X-API-Key": OUR_KEY}, {"token": CLOUD_KEY}, Credentials(api_key=OUR_KEY)),
        ({"Authorization": f"Bearer {JWT}"}, {"token": "eyJother.x.y"}, Credentials(bearer=JWT)),
        (
            {"X-API-Key": CLOUD_KEY, "Authorization": f"Bearer {OUR_KEY}"},
            None,
            Credentials(api_key=CLOUD_KEY),
        ),
        (
            {"X-API-Key": OUR_KEY, "Authorization": f"Bearer {JWT}"},
            None,
            Credentials(api_key=OUR_KEY, bearer=JWT),
        ),
        ({}, {"token": JWT}, Credentials(bearer=JWT)),
    ],
)
def test_extract_credentials(
    headers: dict[str, str], query: dict[str, str] | None, expected: Credentials
) -> None:
    assert extract_credentials(headers, query) == expected


def test_extract_credentials_from_starlette_objects() -> None:
    headers = Headers(raw=[(b"x-api-key", OUR_KEY.encode()), (b"authorization", f"Bearer {JWT}".encode())])
    assert extract_credentials(headers, QueryParams("clientId=1")) == Credentials(api_key=OUR_KEY, bearer=JWT)
    assert extract_credentials(Headers(), QueryParams(f"token={JWT}")) == Credentials(bearer=JWT)


def test_query_token_is_ignored_without_query_params() -> None:
    assert extract_credentials({}, None) == Credentials()


# ---------------------------------------------------------------------------------------------- verification


@pytest.fixture
def verifier(firebase_auth_env: str) -> FirebaseTokenVerifier:
    return FirebaseTokenVerifier(PROJECT_ID)


async def test_valid_token_verifies_to_the_user(verifier: FirebaseTokenVerifier) -> None:
    user = await create_user(verifier.emulator_host, display_name="Ada Lovelace")
    identity = await verifier.verify(user.id_token)
    assert identity == FirebaseIdentity(uid=user.uid, email=user.email, name="Ada Lovelace")

    # A token from a later sign-in (identical within the same second: emulator tokens are unsigned).
    fresh = await sign_in(verifier.emulator_host, user.email, user.password)
    assert await verifier.verify(fresh) == identity


async def test_token_without_display_name(verifier: FirebaseTokenVerifier) -> None:
    user = await create_user(verifier.emulator_host)
    assert await verifier.verify(user.id_token) == FirebaseIdentity(uid=user.uid, email=user.email, name=None)


async def test_expired_token_is_rejected(verifier: FirebaseTokenVerifier) -> None:
    user = await create_user(verifier.emulator_host)
    assert await verifier.verify(mint_expired_token(user.id_token)) is None


async def test_genuine_token_is_rejected_once_it_expires(firebase_auth_env: str) -> None:
    user = await create_user(firebase_auth_env)
    exp = decode_claims(user.id_token)["exp"]
    later = FirebaseTokenVerifier(PROJECT_ID, clock=lambda: exp + 60)
    assert await later.verify(user.id_token) is None


async def test_token_from_the_future_is_rejected(verifier: FirebaseTokenVerifier) -> None:
    user = await create_user(verifier.emulator_host)
    now = int(time.time())
    assert await verifier.verify(rewrite_claims(user.id_token, iat=now + 3600, exp=now + 7200)) is None


async def test_tampered_token_is_rejected(verifier: FirebaseTokenVerifier) -> None:
    user = await create_user(verifier.emulator_host)
    other = await create_user(verifier.emulator_host)
    assert await verifier.verify(mint_tampered_token(user.id_token)) is None
    assert await verifier.verify(mint_tampered_token(user.id_token, email=other.email)) is None
    assert (
        await verifier.verify(rewrite_claims(user.id_token, sub="no-such-user", user_id="no-such-user"))
        is None
    )
    assert await verifier.verify(rewrite_claims(user.id_token, sub=None)) is None
    header, payload, signature = user.id_token.split(".")
    assert await verifier.verify(f"{header}.{payload[:-4]}!!!!.{signature}") is None
    # The untouched token still verifies.
    assert (await verifier.verify(user.id_token)) is not None


async def test_wrong_project_token_is_rejected(
    firebase_auth_env: str, verifier: FirebaseTokenVerifier
) -> None:
    user = await create_user(firebase_auth_env)
    assert await verifier.verify(mint_wrong_project_token(user.id_token)) is None
    # A genuine token of this project, shown to a service configured for another project.
    other_project = FirebaseTokenVerifier("demo-another-project")
    assert await other_project.verify(user.id_token) is None
    # Audience right but issuer wrong.
    wrong_issuer = rewrite_claims(user.id_token, iss="https://securetoken.google.com/demo-elsewhere")
    assert await verifier.verify(wrong_issuer) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b.c",
        "a.b",
        "eyJhbGciOiJub25lIn0.bm90IGpzb24.",
        "Bearer x.y.z",
        "x" * 20_000,
        OUR_KEY,
        None,
        b"bytes.are.wrong",
    ],
)
async def test_garbage_is_rejected(verifier: FirebaseTokenVerifier, garbage: object) -> None:
    assert await verifier.verify(garbage) is None  # type: ignore[arg-type]


async def test_disabled_deleted_and_revoked_users(firebase_auth_env: str) -> None:
    verifier = FirebaseTokenVerifier(PROJECT_ID, cache_ttl=0)
    disabled, deleted, revoked = [await create_user(firebase_auth_env) for _ in range(3)]
    for user in (disabled, deleted, revoked):
        assert await verifier.verify(user.id_token) is not None

    await disable_user(firebase_auth_env, disabled.uid)
    await delete_user(firebase_auth_env, deleted.uid)
    await revoke_tokens(
        firebase_auth_env, revoked.uid, valid_since=decode_claims(revoked.id_token)["iat"] + 1
    )
    for user in (disabled, deleted, revoked):
        assert await verifier.verify(user.id_token) is None


async def test_cache_skips_reverification_until_ttl(firebase_auth_env: str) -> None:
    now = [time.time()]
    verifier = FirebaseTokenVerifier(PROJECT_ID, cache_ttl=30, clock=lambda: now[0])
    user = await create_user(firebase_auth_env)
    identity = await verifier.verify(user.id_token)
    assert identity is not None
    await disable_user(firebase_auth_env, user.uid)

    assert await verifier.verify(user.id_token) == identity  # served from the cache
    assert verifier.verifications == 1
    now[0] += 31
    assert await verifier.verify(user.id_token) is None  # re-verified: the user is now disabled
    assert verifier.verifications == 2


async def test_cache_never_outlives_the_token(firebase_auth_env: str) -> None:
    now = [time.time()]
    verifier = FirebaseTokenVerifier(PROJECT_ID, cache_ttl=86_400, clock=lambda: now[0])
    user = await create_user(firebase_auth_env)
    assert await verifier.verify(user.id_token) is not None
    now[0] = decode_claims(user.id_token)["exp"] + 60
    assert await verifier.verify(user.id_token) is None


async def test_burst_shares_one_verification(firebase_auth_env: str) -> None:
    verifier = FirebaseTokenVerifier(PROJECT_ID)
    user = await create_user(firebase_auth_env)
    expired = mint_expired_token(user.id_token)
    results = await asyncio.gather(*(verifier.verify(user.id_token) for _ in range(25)))
    assert {r.uid for r in results if r} == {user.uid} and all(results)
    rejected = await asyncio.gather(*(verifier.verify(expired) for _ in range(25)))
    assert rejected == [None] * 25
    assert verifier.verifications == 2  # one per distinct token, negative results cached too


async def test_cache_is_bounded(firebase_auth_env: str) -> None:
    verifier = FirebaseTokenVerifier(PROJECT_ID, cache_size=2)
    users = [await create_user(firebase_auth_env) for _ in range(3)]
    for user in users:
        assert await verifier.verify(user.id_token) is not None
    assert verifier.verifications == 3
    assert await verifier.verify(users[0].id_token) is not None  # evicted, verified again
    assert verifier.verifications == 4


async def test_unreachable_emulator_gives_none_and_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nobody listens on: the failure is transient, so each call tries again.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    verifier = FirebaseTokenVerifier(PROJECT_ID)
    token = rewrite_claims(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.",
        aud=PROJECT_ID,
        iss=f"https://securetoken.google.com/{PROJECT_ID}",
        sub="someone",
        iat=int(time.time()),
        exp=int(time.time()) + 3600,
    )
    assert await verifier.verify(token) is None
    assert await verifier.verify(token) is None
    assert verifier.verifications == 2


def test_emulator_mode_is_refused_for_a_real_project(firebase_auth_env: str) -> None:
    with pytest.raises(ValueError, match="demo-"):
        FirebaseTokenVerifier("comfy-cloud-prod")


def test_from_env(firebase_auth_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = FirebaseTokenVerifier.from_env()
    assert verifier.project_id == PROJECT_ID
    assert verifier.emulator_host == firebase_auth_env
    monkeypatch.delenv("FIREBASE_PROJECT_ID")
    with pytest.raises(ValueError, match="FIREBASE_PROJECT_ID"):
        FirebaseTokenVerifier.from_env()


async def test_production_mode_needs_no_credentials_and_rejects_unsigned_tokens(
    firebase_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without FIREBASE_AUTH_EMULATOR_HOST: real verification, which needs a project id but no service
    # account. An emulator token has no "kid"/RS256 header, so it fails before any key is fetched.
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    user = await create_user(firebase_emulator)
    verifier = FirebaseTokenVerifier(PROJECT_ID)
    assert verifier.emulator_host is None
    assert await verifier.verify(user.id_token) is None
