"""/object_info per user, and the server's self-description routes."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from database.engine import Database
from database.repositories.fleet import FleetRepository, Registration
from database.repositories.users import UserRepository
from tests.ingest.compat_support import Caller, png


@pytest.fixture(scope="module")
def object_info(fixtures_dir: Path) -> dict[str, Any]:
    info = json.loads((fixtures_dir / "object_info-0.33.0.json").read_text())
    # What a worker's listing holds besides its own sample files: users' content-addressed inputs.
    info["LoadImageDataSetFromFolder"]["input"]["required"]["folder"][1]["options"].append("cc-inputs")
    info["LoadImage"]["input"]["required"]["image"][0].append("cc-inputs/0123abcd.png")
    return info


async def register(db: Database, object_info: dict[str, Any], stats: dict[str, Any] | None = None) -> str:
    async with db.session() as session:
        fleet = FleetRepository(session)
        digest = await fleet.put_catalogue(object_info)
        await fleet.register(
            Registration(uuid.uuid4(), "http://127.0.0.1:1", 1, digest, "0.33.0", stats, None)
        )
    return digest


def options(node: dict[str, Any], name: str) -> list[Any]:
    spec = node["input"]["required"][name]
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


async def test_no_instances_no_nodes(alice: Caller) -> None:
    response = await alice.client.get("/api/object_info")
    assert response.status_code == 200 and response.json() == {}
    assert (await alice.client.get("/object_info/LoadImage")).json() == {}


async def test_file_combos_list_the_callers_own_files(
    db: Database, alice: Caller, bob: Caller, object_info: dict[str, Any]
) -> None:
    await register(db, object_info)
    await alice.upload(png(), "cat.png")
    await alice.upload(png(color=(1, 1, 1)), "apple.png")
    await alice.upload(png(), "deep.png", subfolder="pets")
    await alice.client.post("/api/upload/image", files={"image": ("song.mp3", b"ID3", "audio/mpeg")})
    await alice.client.post("/api/upload/image", files={"image": ("clip.mp4", b"....", "video/mp4")})
    await alice.client.post(
        "/api/upload/image", files={"image": ("z.latent", b"x", "application/octet-stream")}
    )
    await alice.client.post(
        "/api/upload/image",
        files={"image": ("m.glb", b"glTF", "model/gltf-binary")},
        data={"subfolder": "3d"},
    )
    await alice.upload(png(), "out.png", type="output")
    await bob.upload(png(), "bobs-secret.png")

    mine = (await alice.client.get("/api/object_info")).json()
    assert len(mine) == len(object_info)
    assert options(mine["LoadImage"], "image") == ["apple.png", "cat.png"]  # sorted, top level, images
    assert options(mine["LoadImageMask"], "image") == ["apple.png", "cat.png"]
    assert options(mine["LoadAudio"], "audio") == ["clip.mp4", "song.mp3"]
    assert options(mine["LoadVideo"], "file") == ["clip.mp4"]
    assert options(mine["LoadLatent"], "latent") == ["z.latent"]
    assert options(mine["Load3D"], "model_file") == ["none", "3d/m.glb"]
    assert options(mine["LoadImageDataSetFromFolder"], "folder") == ["3d", "pets"]
    assert mine["LoadImage"]["input"]["required"]["image"][1] == {"image_upload": True}
    assert "remote" in mine["LoadImageOutput"]["input"]["required"]["image"][1]  # filled by /internal/files
    assert mine["KSampler"] == object_info["KSampler"]  # everything else as the workers report it

    theirs = (await bob.client.get("/object_info")).json()
    assert options(theirs["LoadImage"], "image") == ["bobs-secret.png"]
    body = json.dumps(theirs)
    for leaked in ("cat.png", "probe.png", "cc-inputs", "song.mp3"):
        assert leaked not in body  # neither Alice's files nor the worker's input listing


async def test_single_class(db: Database, alice: Caller, object_info: dict[str, Any]) -> None:
    await register(db, object_info)
    await alice.upload(png(), "one.png")
    single = (await alice.client.get("/api/object_info/LoadImage")).json()
    assert list(single) == ["LoadImage"] and options(single["LoadImage"], "image") == ["one.png"]
    assert (await alice.client.get("/api/object_info/SaveImage")).json() == {
        "SaveImage": object_info["SaveImage"]
    }
    assert (await alice.client.get("/api/object_info/NoSuchNode")).json() == {}


async def test_catalogue_follows_the_live_instances(
    db: Database, app: FastAPI, alice: Caller, object_info: dict[str, Any]
) -> None:
    small = {"EmptyImage": copy.deepcopy(object_info["EmptyImage"])}
    await register(db, small)
    assert list((await alice.client.get("/api/object_info")).json()) == ["EmptyImage"]
    await alice.client.get("/api/object_info")
    loads = app.state.ingest.catalogues.loads
    await alice.client.get("/api/object_info")
    assert app.state.ingest.catalogues.loads == loads  # unchanged set of hashes: nothing reloaded
    await register(db, {"SaveImage": copy.deepcopy(object_info["SaveImage"])})
    assert sorted((await alice.client.get("/api/object_info")).json()) == ["EmptyImage", "SaveImage"]


async def test_internal_files(alice: Caller, bob: Caller) -> None:
    await alice.upload(png(color=(1, 1, 1)), "first.png", type="output")
    await alice.upload(png(color=(2, 2, 2)), "second.png", type="output")
    await alice.upload(png(color=(3, 3, 3)), "nested.png", type="output", subfolder="sub")
    await alice.upload(png(), "in.png")
    listing = await alice.client.get("/internal/files/output")
    assert listing.json() == ["second.png [output]", "first.png [output]"]  # newest first, top level
    assert (await alice.client.get("/internal/files/input")).json() == ["in.png [input]"]
    assert (await alice.client.get("/internal/files/temp")).json() == []
    assert (await bob.client.get("/internal/files/output")).json() == []
    bogus = await alice.client.get("/internal/files/bogus")
    assert (bogus.status_code, bogus.json()) == (400, {"error": "Invalid directory type"})
    assert (await alice.client.get("/api/internal/files/output")).status_code == 404  # internal: bare only


async def test_features(
    db: Database, alice: Caller, anonymous: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    recorded = json.loads((fixtures_dir / "http" / "features-0.33.0.json").read_text())["exchanges"][0]
    flags = (await alice.client.get("/api/features")).json()
    assert flags["supports_preview_metadata"] is recorded["response"]["body"]["supports_preview_metadata"]
    assert flags["max_upload_size"] == 50 * 1024 * 1024
    assert flags["max_concurrent_jobs"] == 1 and flags["assets"] is False
    async with db.session() as session:
        await UserRepository(session).set_max_concurrent_jobs(alice.id, 5)
    assert (await alice.client.get("/features")).json()["max_concurrent_jobs"] == 5
    public = await anonymous.get("/api/features")  # the frontend asks before it has credentials
    assert public.status_code == 200 and public.json()["max_concurrent_jobs"] == 1


async def test_system_stats(db: Database, alice: Caller, fixtures_dir: Path) -> None:
    empty = (await alice.client.get("/api/system_stats")).json()
    assert empty["devices"] == [] and empty["system"]["comfyui_version"] == ""
    assert empty["system"]["required_frontend_version"] == "1.49.6"
    recorded = json.loads((fixtures_dir / "http" / "system_stats-0.33.0.json").read_text())["response"][
        "body"
    ]
    await register(db, {"EmptyImage": {}}, recorded)
    await register(db, {"SaveImage": {}}, recorded)
    stats = (await alice.client.get("/system_stats")).json()
    assert stats["system"]["comfyui_version"] == "0.33.0"
    assert stats["system"]["argv"] == []  # a worker's paths are nobody's business
    assert stats["system"]["ram_total"] == recorded["system"]["ram_total"]
    assert stats["devices"] == recorded["devices"] * 2  # the fleet's devices


async def test_model_routes(
    db: Database, alice: Caller, object_info: dict[str, Any], fixtures_dir: Path
) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sd15.safetensors", "x/y.ckpt"]
    await register(db, info)
    survey = json.loads((fixtures_dir / "http" / "endpoint-survey-0.33.0.json").read_text())["exchanges"]
    folders = next(e for e in survey if e["request"]["path"] == "/api/models")["response"]["body"]
    assert (await alice.client.get("/api/models")).json() == folders
    assert (await alice.client.get("/api/models/checkpoints")).json() == ["sd15.safetensors", "x/y.ckpt"]
    assert (await alice.client.get("/api/models/vae")).json() == []  # "pixel_space" is no file
    assert (await alice.client.get("/api/embeddings")).json() == []
    missing = await alice.client.get("/api/models/nope")
    assert (missing.status_code, missing.content) == (404, b"")
    experiment = (await alice.client.get("/api/experiment/models")).json()
    assert {"configs", "custom_nodes"}.isdisjoint(f["name"] for f in experiment)
    assert set(experiment[0]) == {"name", "folders", "extensions"}
    listing = (await alice.client.get("/api/experiment/models/checkpoints")).json()
    assert listing == [{"name": "sd15.safetensors", "pathIndex": 0}, {"name": "x/y.ckpt", "pathIndex": 0}]
    assert (await alice.client.get("/api/experiment/models/nope")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/extensions", []),
        ("/api/i18n", {}),
        ("/api/workflow_templates", {}),
        ("/api/global_subgraphs", {}),
        ("/api/global_subgraphs/75e157ce", None),
        ("/api/node_replacements", {}),
        ("/internal/folder_paths", {}),
        ("/internal/logs", ""),
        ("/internal/logs/raw", {"entries": [], "size": {"cols": None, "rows": None}}),
        ("/extensions", []),
    ],
)
async def test_honest_empty_answers(alice: Caller, path: str, body: Any) -> None:
    response = await alice.client.get(path)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == body


async def test_logs_subscribe_and_internal_prefix(alice: Caller) -> None:
    subscribe = await alice.client.patch("/internal/logs/subscribe", json={"clientId": "x", "enabled": True})
    assert (subscribe.status_code, subscribe.content) == (200, b"")
    assert (await alice.client.get("/api/internal/logs")).status_code == 404  # as ComfyUI


async def test_object_info_requires_credentials(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/object_info")).status_code == 401
    assert (await anonymous.get("/internal/files/input")).status_code == 401
