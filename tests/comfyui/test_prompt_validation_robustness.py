"""Whatever a client sends, validation answers with a result or a 400 body, never an exception (no 500s)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from comfy_cloud.comfyui.validation import PromptError, check_prompt_request, file_inputs, validate_prompt

from .fixture_data import load

JUNK: list[Any] = [
    None, True, 0, -1, 2.5, "", "x", "none", [], [1], ["1"], ["99", 0], ["1", 7], ["1", "0"], [["1"], 0],
    {}, {"__value__": [1, 2]}, {"__value__": "a"}, {"a": [1, {"b": None}]}, "images.image0", 10**30,
    "inf", "-inf", "nan", float("inf"), [float("nan"), 0],
]  # fmt: skip

SEEDS = [
    "workflows/p2-upload-composite-scale.json",
    "workflows/p3-ws-coverage.json",
    "workflows/p4-latent-path-pixel-space-vae.json",
]


def _dynamic_graph() -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "BatchImagesNode",
            "inputs": {"images.image0": ["1", 0], "images.image1": ["1", 0]},
        },
        "3": {
            "class_type": "ResizeImageMaskNode",
            "inputs": {
                "input": ["2", 0],
                "resize_type": "scale dimensions",
                "resize_type.width": 8,
                "resize_type.height": 8,
                "resize_type.crop": "center",
                "scale_method": "area",
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
        "5": {
            "class_type": "Load3D",
            "inputs": {"model_file": "m.glb", "image": "", "width": 8, "height": 8},
        },
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 2]}},
    }


def _mutate(prompt: dict[str, Any], rng: random.Random) -> None:
    node_id = rng.choice(list(prompt))
    node = prompt[node_id]
    roll = rng.random()
    if roll < 0.1:
        prompt[node_id] = rng.choice(JUNK)
    elif roll < 0.2 and isinstance(node, dict):
        node[rng.choice(["class_type", "inputs", "_meta"])] = rng.choice(JUNK)
    elif isinstance(node, dict) and isinstance(node.get("inputs"), dict) and node["inputs"]:
        name = rng.choice([*node["inputs"], "extra", "images.image9"])
        if rng.random() < 0.15:
            node["inputs"].pop(name, None)
        else:
            node["inputs"][name] = copy.deepcopy(rng.choice(JUNK))


def test_randomly_damaged_prompts_never_raise_anything_but_prompt_error(object_info_033: dict) -> None:
    rng = random.Random(20261128)
    seeds = [load(path) for path in SEEDS] + [_dynamic_graph()]
    for _ in range(3000):
        prompt = copy.deepcopy(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            _mutate(prompt, rng)
        targets = rng.choice([None, None, list(prompt)[:2], []])
        style = rng.choice(["0.33", "0.3"])
        try:
            check_prompt_request({"prompt": prompt, "partial_execution_targets": targets}, style=style)
            result = validate_prompt(
                prompt,
                object_info_033,
                partial_execution_targets=targets,
                style=style,
                file_exists=lambda _c, name: name.startswith("m"),
            )
            json.dumps(result.node_errors, allow_nan=False)
        except PromptError as error:
            assert error.status == 400
            json.dumps(error.body, allow_nan=False)
        file_inputs(prompt, object_info_033)


def test_malformed_catalogue_entries_are_reported_not_raised() -> None:
    catalogue = {
        "Out": {"input": {"required": {"a": ["INT", {"min": 0}]}}, "output": [], "output_node": True},
        "NoInput": {"input": None, "output": "IMAGE", "output_node": False},
        "OddSpecs": {
            "input": {"required": {"a": 5, "b": [], "c": ["INT", "opts"]}, "optional": []},
            "output": ["INT"],
        },
        "BadGrow": {"input": {"required": {"g": ["COMFY_AUTOGROW_V3", {}]}}, "output": ["INT"]},
        "BadCombo": {"input": {"required": {"d": ["COMFY_DYNAMICCOMBO_V3", {"options": [5]}]}}, "output": []},
    }
    prompt = {
        "1": {"class_type": "NoInput", "inputs": {}},
        "2": {"class_type": "OddSpecs", "inputs": {"a": 1, "b": 2, "c": "3"}},
        "3": {"class_type": "BadGrow", "inputs": {"g.x": 1}},
        "4": {"class_type": "BadCombo", "inputs": {"d": "k"}},
    }
    for node_id in prompt:
        graph = {**prompt, "o": {"class_type": "Out", "inputs": {"a": [node_id, 0]}}}
        try:
            validate_prompt(graph, catalogue)
        except PromptError as error:
            json.dumps(error.body)
        file_inputs(graph, catalogue)
