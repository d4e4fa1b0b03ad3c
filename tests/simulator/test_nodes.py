"""The simulator's image math, naming rules and execution order, checked against ComfyUI's definitions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfy_cloud.simulator import images
from comfy_cloud.simulator.files import save_image_path, split_annotation, upload_target
from comfy_cloud.simulator.graph import coerce_widgets, execution_order, upstream
from comfy_cloud.simulator.nodes import preview_text
from tests.simulator.support import fixture


def _order(prompt: dict, outputs: list[str], output_nodes: set[str]) -> list[str]:
    return execution_order(prompt, outputs, lambda n: n in output_nodes)


def test_execution_order_matches_the_recorded_seven_node_run() -> None:
    prompt = fixture("ws/success-fresh-0.33.0.json")["request"]["body"]["prompt"]
    assert _order(prompt, ["4", "5", "7"], {"4", "5", "7"}) == ["1", "2", "5", "3", "4", "6", "7"]
    assert _order(prompt, ["5"], {"4", "5", "7"}) == ["1", "2", "5"]  # partial execution


def test_execution_order_prefers_nodes_two_steps_before_an_output() -> None:
    prompt = fixture("workflows/p4-latent-path-pixel-space-vae.json")
    order = _order(prompt, ["s"], {"s"})
    assert order.index("v") < order.index("e") < order.index("u") < order.index("d") < order.index("s")
    assert sorted(order) == sorted(prompt)


def test_widget_values_are_written_back_coerced() -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": "8", "height": 8.0, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": 3}},
        "9": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": 4}},
    }
    definitions = fixture("object_info-0.33.0.json")
    definitions["ProbeSleep"] = {"input": {"required": {"seconds": ["FLOAT", {}]}}}
    coerce_widgets(prompt, upstream(prompt, ["2"]), definitions.get)
    assert prompt["1"]["inputs"] == {"width": 8, "height": 8, "batch_size": 1, "color": 0}
    assert prompt["2"]["inputs"]["seconds"] == 3.0 and isinstance(prompt["2"]["inputs"]["seconds"], float)
    assert isinstance(prompt["9"]["inputs"]["seconds"], int)  # not validated: left alone


def test_save_conversion_truncates_like_comfyui() -> None:
    pixel = np.array([[[10, 200, 30]]], dtype=np.float32) / 255.0
    assert images.to_uint8(np.float32(1.0) - pixel).tolist() == [[[245, 54, 225]]]


def test_empty_image_color_and_shape() -> None:
    out = images.empty_image(3, 2, 2, 0x336699)
    assert out.shape == (2, 2, 3, 3) and out.dtype == np.float32
    assert images.to_uint8(out[1])[0, 0].tolist() == [0x33, 0x66, 0x99]


def test_gaussian_blur_equals_the_2d_reflect_convolution() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((1, 9, 11, 3), dtype=np.float32)
    radius, sigma = 3, 1.5
    size = radius * 2 + 1
    t = np.linspace(-1, 1, size)
    x, y = np.meshgrid(t, t, indexing="ij")
    kernel = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    expected = np.zeros_like(image)
    for i in range(size):
        for j in range(size):
            expected += kernel[i, j] * padded[:, i : i + 9, j : j + 11]
    np.testing.assert_allclose(images.gaussian_blur(image, radius, sigma), expected, atol=1e-5)
    assert images.gaussian_blur(image, 0, 1.0) is image


def test_scale_and_centre_crop() -> None:
    image = np.zeros((2, 40, 80, 3), dtype=np.float32)
    image[:, :, 20:60] = 1.0  # a white centre band that a centre crop to a square keeps entirely
    out = images.resize_image(image, 20, 20, "nearest-exact", "center")
    assert out.shape == (2, 20, 20, 3) and out.min() == 1.0
    assert images.scale_size(40, 80, 0, 20) == (40, 20)  # width 0 keeps the aspect ratio
    assert images.scale_size(40, 80, 20, 0) == (20, 10)


def test_composite_with_mask_and_batch_repeat() -> None:
    dest = np.zeros((2, 6, 6, 3), dtype=np.float32)
    source = np.ones((1, 2, 2, 3), dtype=np.float32)
    mask = np.full((1, 4, 4), 0.5, dtype=np.float32)
    out = images.composite(dest, source, 3, 1, False, mask)
    assert out.shape == (2, 6, 6, 3) and np.allclose(out[:, 1:3, 3:5], 0.5)
    assert out[:, 0].max() == 0.0 and out[:, :, :3].max() == 0.0
    edge = images.composite(dest, source, 5, 5, False, None)  # clipped at the border
    assert edge[:, 5, 5].tolist() == [[1.0] * 3] * 2 and edge.sum() == 6.0


def _png(tmp_path: Path, mode: str, color: tuple[int, ...]) -> Path:
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (3, 2), color).save(path)
    return path


def test_load_image_masks(tmp_path: Path) -> None:
    image, mask = images.load_image(_png(tmp_path, "RGBA", (255, 0, 0, 51)))
    assert image.shape == (1, 2, 3, 3) and mask.shape == (1, 2, 3)
    assert np.allclose(mask, 1 - 51 / 255)
    _, opaque = images.load_image(_png(tmp_path, "RGB", (1, 2, 3)))
    assert opaque.shape == (1, 64, 64) and opaque.max() == 0.0  # ComfyUI's placeholder
    red = images.load_mask(_png(tmp_path, "RGB", (255, 0, 0)), "red")
    alpha = images.load_mask(_png(tmp_path, "RGB", (255, 0, 0)), "alpha")
    assert red.shape == (1, 2, 3) and red.min() == 1.0 and alpha.max() == 0.0


def test_preview_encoding_enlarges_to_max_size() -> None:
    data = images.encode_preview(Image.new("RGB", (32, 32), (255, 0, 0)), "JPEG", 64)
    assert Image.open(io.BytesIO(data)).size == (64, 64)
    full = images.encode_preview(Image.new("RGB", (5, 7)), "PNG", None)
    assert Image.open(io.BytesIO(full)).size == (5, 7)


def test_preview_any_text() -> None:
    assert [preview_text(v) for v in (None, "s", 8, 1.5, True, [1, "a"], {"k": 1})] == [
        "None",
        "s",
        "8",
        "1.5",
        "True",
        '[1, "a"]',
        '{"k": 1}',
    ]
    assert preview_text(np.zeros((1, 2), dtype=np.float32)) == "tensor([[0., 0.]])"


def test_save_paths_counters_and_escape(tmp_path: Path) -> None:
    out = tmp_path.resolve()
    (out / "combo").mkdir()
    for name in ("test_00001_.png", "test_00007_.png", "testing_00099_.png", "test_x_.png"):
        (out / "combo" / name).write_bytes(b"")
    folder, stem, counter, subfolder = save_image_path("combo/test", out, 8, 8)
    assert (folder, stem, counter, subfolder) == (out / "combo", "test", 8, "combo")
    assert save_image_path("img_%width%x%height%", out, 64, 32)[1] == "img_64x32"
    with pytest.raises(Exception, match=r"^\*\*\*\* ERROR: Saving image outside the output folder"):
        save_image_path("../../escape", out, 8, 8)


def test_upload_names(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"1")
    assert upload_target(tmp_path, "a.png", b"1", overwrite=False) == ("a.png", False)
    assert upload_target(tmp_path, "a.png", b"2", overwrite=False) == ("a (1).png", True)
    assert upload_target(tmp_path, "a.png", b"2", overwrite=True) == ("a.png", True)
    assert split_annotation("x.png [output]", "input") == ("x.png", "output")
    assert split_annotation("x.png", "input") == ("x.png", "input")
