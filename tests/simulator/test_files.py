"""Uploads, /view and the files nodes write, against http/upload-*.json, http/view-0.33.0.json."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
from PIL import Image

from comfy_cloud.simulator import SimulatorServer
from tests.simulator.support import (
    Recorder,
    Start,
    client_for,
    fixture,
    is_type,
    png,
    submit,
    upload,
    workflow,
)

HEADERS_OF_INTEREST = ("x-content-type-options", "content-disposition", "content-type")


async def run(sim: SimulatorServer, http: httpx.AsyncClient, prompt: dict[str, Any], **fields: Any) -> dict:
    """Run a prompt to its end; returns its history entry."""
    async with Recorder(sim.ws_url) as a:
        prompt_id = await submit(http, prompt, client_id=a.sid, **fields)
        await a.wait_done(prompt_id)
        assert not any(is_type(f, "execution_error") for f in a.frames), a.frames
    return (await http.get(f"/api/history/{prompt_id}")).json()[prompt_id]


async def test_upload_naming_sequence(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("http/upload-0.33.0.json")["exchanges"]
    probe, other = png(8, 8, (1, 2, 3)), png(8, 8, (9, 9, 9))
    sent = [
        await upload(http, "probe.png", probe),
        await upload(http, "probe.png", probe, overwrite="true"),
        await upload(http, "probe.png", probe),  # same bytes: same name, nothing written
        await upload(http, "probe.png", probe, subfolder="sub/dir"),
        await upload(http, "probe.png", probe, type="temp"),
        await upload(http, "probe.png", probe, type="output"),
        await upload(http, "probe.png", other),  # different bytes: renamed
        await upload(http, "probe.png", probe, subfolder="../.."),
        await http.post("/api/upload/image", data={"subfolder": "x"}),
    ]
    for response, exchange in zip(sent, rec, strict=False):
        assert response.status_code == exchange["response"]["status"], exchange["label"]
        if exchange["response"]["body"] is None:
            assert response.content == b"" and "content-type" not in response.headers
        else:
            assert response.json() == exchange["response"]["body"], exchange["label"]
            assert response.headers["content-type"] == "application/json; charset=utf-8"
    root = sim.state.dirs
    assert (root.input / "sub/dir/probe.png").read_bytes() == probe
    assert (root.input / "probe (1).png").read_bytes() == other
    assert (root.temp / "probe.png").is_file() and (root.output / "probe.png").is_file()
    bogus = await upload(http, "x.png", probe, type="bogus")
    assert (
        bogus.status_code == 500 and bogus.text == "500 Internal Server Error\n\nServer got itself in trouble"
    )


async def test_upload_mask_copies_alpha_into_the_original(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    await upload(http, "photo.png", png(4, 4, (200, 100, 50)))
    mask = png(4, 4, (0, 0, 0, 77), mode="RGBA")
    ref = json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"})
    files = {"image": ("maskprobe.png", mask, "image/png")}
    response = await http.post(
        "/api/upload/mask", files=files, data={"subfolder": "clipspace", "original_ref": ref}
    )
    assert response.json() == fixture("http/upload-0.33.0.json")["exchanges"][-1]["response"]["body"]
    result = Image.open(sim.state.dirs.input / "clipspace" / "maskprobe.png")
    assert result.mode == "RGBA" and result.getpixel((0, 0)) == (200, 100, 50, 77)
    missing = json.dumps({"filename": "nothere.png"})
    files = {"image": ("m2.png", mask, "image/png")}
    response = await http.post("/api/upload/mask", files=files, data={"original_ref": missing})
    assert (
        response.status_code == 200 and not (sim.state.dirs.input / "m2.png").exists()
    )  # 200, nothing written


async def test_view_variants(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    probe = png(8, 8, (10, 20, 30))
    for fields in ({}, {"subfolder": "sub/dir"}, {"type": "output"}):
        await upload(http, "probe.png", probe, **fields)
    for exchange in fixture("http/view-0.33.0.json")["exchanges"]:
        response = await http.get(exchange["request"]["path"])
        expected = exchange["response"]
        assert response.status_code == expected["status"], exchange["request"]["path"]
        ours = {k: v for k, v in response.headers.items() if k in HEADERS_OF_INTEREST}
        assert ours == {k.lower(): v for k, v in expected["headers"].items()}, exchange["request"]["path"]
        if expected["body_summary"] is None:
            assert response.content == b""
        else:
            head = re.search(r"head=([0-9a-f]+)", expected["body_summary"]).group(1)  # type: ignore[union-attr]
            assert response.content.hex().startswith(head[:8]), exchange["request"]["path"]
    rgb = Image.open(io.BytesIO((await http.get("/view?filename=probe.png&type=input&channel=rgb")).content))
    alpha = Image.open(io.BytesIO((await http.get("/view?filename=probe.png&type=input&channel=a")).content))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (10, 20, 30)
    assert alpha.mode == "RGBA" and alpha.getpixel((0, 0)) == (0, 0, 0, 255)  # opaque source


async def test_view_forces_download_of_risky_types(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    (sim.state.dirs.output / "page.html").write_text("<script>alert(1)</script>")
    response = await http.get("/view?filename=page.html")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_save_image_naming_and_truncation_0_3_64(legacy: SimulatorServer) -> None:
    """upload-0.3.64: (10,200,30) inverted is saved as (245,54,225): 8-bit conversion truncates."""
    async with client_for(legacy) as http:
        data = png(32, 24, (10, 200, 30))
        assert (await upload(http, "probe_upload.png", data, overwrite="true")).json()[
            "name"
        ] == "probe_upload.png"
        entry = await run(legacy, http, workflow("loadimage_invert"))
        image = entry["outputs"]["3"]["images"][0]
        assert image == {"filename": "loadimage_test_00001_.png", "subfolder": "", "type": "output"}
        view = await http.get("/view", params={"filename": image["filename"], "type": "output"})
        saved = Image.open(io.BytesIO(view.content))
        expected = fixture("http/upload-0.3.64.json")["output_pixel"]
        assert list(saved.size) == expected["size"] and list(saved.getpixel((0, 0))) == expected["pixel00"]
        again = await run(legacy, http, workflow("loadimage_invert"))
        assert again["outputs"]["3"]["images"][0]["filename"] == "loadimage_test_00002_.png"


async def test_composite_scale_into_subfolder(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    """§6.2 prompt 2: LoadImage composited with a SolidMask, blurred, scaled, saved under combo/."""
    await upload(http, "probe.png", png(16, 16, (255, 255, 255)))
    entry = await run(sim, http, workflow("p2-upload-composite-scale"))
    images = entry["outputs"]["o"]["images"]
    assert images == [
        {"filename": "test_00001_.png", "subfolder": "combo", "type": "output"},
        {"filename": "test_00002_.png", "subfolder": "combo", "type": "output"},
    ]
    saved = Image.open(sim.state.dirs.output / "combo" / "test_00001_.png")
    assert saved.size == (128, 96)
    # Half-transparent white pasted over 0x336699 lands between the two colours, well inside the paste.
    r, g, b = saved.getpixel((30, 24))
    assert 0x33 < r < 255 and 0x66 < g < 255 and 0x99 < b < 255


async def test_preview_image_goes_to_temp_0_3_64(legacy: SimulatorServer) -> None:
    rec = fixture("ws/preview-image-temp-output-0.3.64.json")
    async with client_for(legacy) as http:
        entry = await run(legacy, http, rec["request"]["body"]["prompt"])
        image = entry["outputs"]["2"]["images"][0]
        assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", image["filename"])
        assert (image["subfolder"], image["type"]) == ("", "temp")
        view = await http.get(
            "/view", params={"filename": image["filename"], "subfolder": "", "type": "temp"}
        )
        assert view.status_code == 200 and view.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(view.content)).getpixel((0, 0)) == (0, 0, 255)


async def test_load_image_paths_and_masks(start_sim: Start) -> None:
    sim = await start_sim(full_catalogue=True)
    async with client_for(sim) as http:
        await upload(http, "alpha.png", png(4, 4, (255, 0, 0, 64), mode="RGBA"), subfolder="sub/dir")
        (sim.state.dirs.output / "made.png").write_bytes(png(4, 4, (0, 255, 0)))
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "sub/dir/alpha.png"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
            "3": {"class_type": "LoadImage", "inputs": {"image": "made.png [output]"}},
            "4": {"class_type": "GetImageSize", "inputs": {"image": ["3", 0]}},
            "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
            "6": {"class_type": "LoadImageMask", "inputs": {"image": "sub/dir/alpha.png", "channel": "red"}},
            "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
        }
        entry = await run(sim, http, prompt)
        alpha_mask = entry["outputs"]["2"]["text"][0]
        assert alpha_mask.startswith("tensor([[[0.7490, 0.7490,")
        assert entry["outputs"]["5"]["text"] == ["1"]
        assert entry["outputs"]["7"]["text"][0].startswith("tensor([[[1., 1., 1., 1.]")
        broken = {**prompt, "1": {"class_type": "LoadImage", "inputs": {"image": "no.png"}}}
        missing = await http.post("/api/prompt", json={"prompt": broken})
        assert missing.status_code == 200  # the other outputs are valid: queued, with node_errors
        assert (
            missing.json()["node_errors"]["1"]["errors"][0]["details"] == "image - Invalid image file: no.png"
        )
        info = (await http.get("/api/object_info/LoadImage")).json()["LoadImage"]
        assert info["input"]["required"]["image"][0] == []  # only top-level input files are listed
        await upload(http, "b.png", png(2, 2, (0, 0, 0)))
        await upload(http, "a.png", png(2, 2, (0, 0, 0)))
        info = (await http.get("/api/object_info/LoadImage")).json()["LoadImage"]
        assert info["input"]["required"]["image"][0] == ["a.png", "b.png"]


async def test_websocket_image_and_unexecutable_nodes(start_sim: Start) -> None:
    sim = await start_sim(full_catalogue=True)
    async with client_for(sim) as http, Recorder(sim.ws_url) as a:
        prompt_id = await submit(http, workflow("p4-latent-path-pixel-space-vae"), client_id=a.sid)
        await a.wait_done(prompt_id)
        error = next(f["data"] for f in a.frames if is_type(f, "execution_error"))
        assert (error["node_type"], error["exception_type"]) == ("VAELoader", "NotImplementedError")
        assert "simulator" in error["exception_message"]
