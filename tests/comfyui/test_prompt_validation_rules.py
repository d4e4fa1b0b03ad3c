"""ComfyUI's validation rules, one behaviour per test (real 0.33.0 nodes, or small synthetic ones)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from comfy_cloud.comfyui.validation import (
    PromptError,
    check_prompt_request,
    file_inputs,
    is_canonical_uuid,
    required_node_classes,
    types_compatible,
    validate_prompt,
)

from .fixture_data import input_file_exists

SAVE = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}


def empty_image(**overrides: Any) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0, **overrides},
    }


def rejected(prompt: dict, object_info: dict, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(PromptError) as caught:
        validate_prompt(prompt, object_info, **kwargs)
    assert caught.value.status == 400
    return caught.value.body


def only_reason(body: dict[str, Any], node_id: str) -> dict[str, Any]:
    (reason,) = body["node_errors"][node_id]["errors"]
    return reason


# --- the request body -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], None, "prompt", {}, {"client_id": "x"}])
def test_body_without_a_prompt_is_no_prompt(body: Any) -> None:
    with pytest.raises(PromptError) as caught:
        check_prompt_request(body)
    assert caught.value.body == {
        "error": {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        },
        "node_errors": {},
    }


@pytest.mark.parametrize(
    "prompt_id",
    [
        "NOT-A-UUID",
        "8F2C4E8A-1B7D-4C3A-9E5F-0A1B2C3D4E5F",  # uppercase
        "8f2c4e8a1b7d4c3a9e5f0a1b2c3d4e5f",  # no hyphens
        "{8f2c4e8a-1b7d-4c3a-9e5f-0a1b2c3d4e5f}",
        "urn:uuid:8f2c4e8a-1b7d-4c3a-9e5f-0a1b2c3d4e5f",
        12345,
        "",
    ],
)
def test_non_canonical_prompt_id_is_rejected_in_033_style(prompt_id: Any) -> None:
    with pytest.raises(PromptError) as caught:
        check_prompt_request({"prompt": {}, "prompt_id": prompt_id})
    assert caught.value.error["type"] == "invalid_prompt_id"
    check_prompt_request({"prompt": {}, "prompt_id": prompt_id}, style="0.3")  # 0.3.64 has no such check


def test_canonical_missing_or_null_prompt_id_is_accepted() -> None:
    check_prompt_request({"prompt": {}, "prompt_id": "8f2c4e8a-1b7d-4c3a-9e5f-0a1b2c3d4e5f"})
    check_prompt_request({"prompt": {}, "prompt_id": None})
    check_prompt_request({"prompt": {}})
    assert is_canonical_uuid("8f2c4e8a-1b7d-4c3a-9e5f-0a1b2c3d4e5f")


def test_no_prompt_is_checked_before_the_prompt_id() -> None:
    with pytest.raises(PromptError) as caught:
        check_prompt_request({"prompt_id": "bad"})
    assert caught.value.error["type"] == "no_prompt"


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": [1, 2]},
        {"prompt": "graph"},
        {"prompt": None},
        {"prompt": {}, "number": "first"},
        {"prompt": {}, "extra_data": []},
        {"prompt": {}, "partial_execution_targets": "5"},
    ],
)
def test_bodies_comfyui_answers_with_500_get_a_400_invalid_prompt(body: dict[str, Any]) -> None:
    with pytest.raises(PromptError) as caught:
        check_prompt_request(body)
    assert caught.value.status == 400
    assert caught.value.error["type"] == "invalid_prompt"
    assert caught.value.error["message"] and caught.value.error["details"]


def test_numeric_strings_are_valid_numbers_like_comfyuis_float() -> None:
    check_prompt_request({"prompt": {}, "number": "5"})
    check_prompt_request({"prompt": {}, "number": 5, "front": True, "extra_data": {}})


def test_unknown_style_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_prompt_request({"prompt": {}}, style="1.0")


# --- structure ------------------------------------------------------------------------------------


def test_unknown_class_uses_the_node_title_when_given(object_info_033: dict) -> None:
    prompt = {"7": {"class_type": "Nope", "inputs": {}, "_meta": {"title": "My node"}}}
    body = rejected(prompt, object_info_033)
    assert body["error"] == {
        "type": "missing_node_type",
        "message": "Node 'My node' not found. The custom node may not be installed.",
        "details": "Node ID '#7'",
        "extra_info": {"node_id": "7", "class_type": "Nope", "node_title": "My node"},
    }


def test_missing_class_type_uses_the_node_title_when_given(object_info_033: dict) -> None:
    prompt = {"7": {"inputs": {}, "_meta": {"title": "Loader"}}}
    body = rejected(prompt, object_info_033)
    assert body["error"]["message"].startswith("Node 'Loader' has no class_type.")
    assert body["error"]["extra_info"] == {"node_id": "7", "class_type": None, "node_title": "Loader"}


def test_a_node_that_is_not_an_object_has_no_class_type(object_info_033: dict) -> None:
    body = rejected({"1": "EmptyImage", "2": SAVE}, object_info_033, style="0.3")
    assert body["error"]["message"] == "Cannot execute because a node is missing the class_type property."


def test_structural_errors_stop_at_the_first_bad_node_in_prompt_order(object_info_033: dict) -> None:
    body = rejected({"1": {"class_type": "A"}, "2": {"inputs": {}}}, object_info_033)
    assert body["error"]["extra_info"]["node_id"] == "1"


def test_partial_execution_targets_without_an_output_node_is_no_outputs(object_info_033: dict) -> None:
    prompt = {"1": empty_image(), "2": SAVE}
    for targets in ([], ["1"], ["99"]):
        body = rejected(prompt, object_info_033, partial_execution_targets=targets)
        assert body["error"]["type"] == "prompt_no_outputs"


# --- links ----------------------------------------------------------------------------------------


def test_any_type_input_accepts_every_linked_type(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "2": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    assert validate_prompt(prompt, object_info_033).outputs_to_execute == ["3"]


@pytest.mark.parametrize(
    ("received", "accepted", "compatible"),
    [
        ("IMAGE", "IMAGE", True),
        ("LATENT", "IMAGE", False),
        ("*", "IMAGE", True),
        ("MASK", "*", True),
        ("INT,FLOAT", "FLOAT", True),
        ("FLOAT", "INT, FLOAT", True),
        ("STRING", "INT,FLOAT", False),
        ("STRING,*", "INT", True),
        ("COMFY_MATCHTYPE_V3", "IMAGE", True),
        (["a", "b"], "COMBO", True),
        (["a", "b"], ["a", "b"], True),
        ("COMBO", ["a", "b"], False),
        ("STRING", ["a", "b"], False),
    ],
)
def test_link_type_compatibility_follows_comfyui(received: Any, accepted: Any, compatible: bool) -> None:
    assert types_compatible(received, accepted) is compatible


def test_link_of_the_wrong_length_is_a_bad_linked_input(object_info_033: dict) -> None:
    body = rejected(
        {"1": empty_image(), "2": {**SAVE, "inputs": {"images": ["1"], "filename_prefix": "x"}}},
        object_info_033,
    )
    assert only_reason(body, "2") == {
        "type": "bad_linked_input",
        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
        "details": "images",
        "extra_info": {
            "input_name": "images",
            "input_config": ["IMAGE", {"tooltip": "The images to save."}],
            "received_value": ["1"],
        },
    }


def test_output_node_linked_to_a_missing_node_fails_with_its_own_exception(object_info_033: dict) -> None:
    body = rejected({"2": {**SAVE, "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}, object_info_033)
    assert body["error"]["details"] == "Exception when validating node: '99'"
    reason = only_reason(body, "2")
    assert reason["type"] == "exception_during_validation"
    assert reason["extra_info"]["exception_type"] == "KeyError"


@pytest.mark.parametrize(
    ("source", "index", "message"),
    [
        (empty_image(), "0", "tuple indices must be integers or slices, not str"),
        (empty_image(), 1.0, "tuple indices must be integers or slices, not float"),
        (empty_image(), 3, "tuple index out of range"),
        # V3 nodes keep RETURN_TYPES in a list
        (
            {
                "class_type": "ImageStitch",
                "inputs": {
                    "image1": ["9", 0],
                    "direction": "right",
                    "match_image_size": True,
                    "spacing_width": 0,
                    "spacing_color": "white",
                },
            },
            4,
            "list index out of range",
        ),
    ],
)
def test_bad_output_index_reports_pythons_exception(
    object_info_033: dict, source: dict, index: Any, message: str
) -> None:
    prompt = {
        "9": empty_image(),
        "1": source,
        "2": {**SAVE, "inputs": {"images": ["1", index], "filename_prefix": "x"}},
    }
    body = rejected(prompt, object_info_033)
    assert only_reason(body, "2")["details"] == message


def test_node_without_inputs_raises_keyerror_inputs_on_its_consumer(object_info_033: dict) -> None:
    body = rejected({"1": {"class_type": "EmptyImage"}, "2": SAVE}, object_info_033)
    reason = only_reason(body, "1")
    assert reason["type"] == "exception_during_inner_validation"
    assert reason["details"] == "'inputs'"
    assert reason["extra_info"]["input_name"] == "images"
    assert reason["extra_info"]["linked_node"] == ["1", 0]


def test_dependency_cycle_is_reported_on_every_member(object_info_033: dict) -> None:
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {**SAVE, "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    body = rejected(prompt, object_info_033)
    assert body["error"]["details"] == ""  # the output's own reasons: none
    assert list(body["node_errors"]) == ["2", "1"]
    reason = only_reason(body, "1")
    assert reason == {
        "type": "dependency_cycle",
        "message": "Dependency cycle detected",
        "details": "2 (ImageInvert) -> 1 (ImageInvert) -> 2 (ImageInvert)",
        "extra_info": {"node_id": "1", "cycle_nodes": ["2", "1"]},
    }
    assert body["node_errors"]["2"]["dependent_outputs"] == ["3"]


def test_very_deep_graphs_do_not_hit_pythons_recursion_limit(object_info_033: dict) -> None:
    prompt: dict[str, Any] = {"0": empty_image()}
    for i in range(1, 3000):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt["out"] = {**SAVE, "inputs": {"images": ["2999", 0], "filename_prefix": "x"}}
    assert validate_prompt(prompt, object_info_033).outputs_to_execute == ["out"]


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "details"),
    [
        ("abc", "width, abc, invalid literal for int() with base 10: 'abc'"),
        ("3.5", "width, 3.5, invalid literal for int() with base 10: '3.5'"),
        (
            None,
            "width, None, int() argument must be a string, a bytes-like object or a real number, "
            "not 'NoneType'",
        ),
        (
            {"a": 1},
            "width, {'a': 1}, int() argument must be a string, a bytes-like object or a real number, "
            "not 'dict'",
        ),
    ],
)
def test_int_coercion_failures_carry_pythons_message(object_info_033: dict, value: Any, details: str) -> None:
    reason = only_reason(rejected({"1": empty_image(width=value), "2": SAVE}, object_info_033), "1")
    assert reason["type"] == "invalid_input_type"
    assert reason["details"] == details
    assert reason["extra_info"]["received_value"] == value


@pytest.mark.parametrize("value", ["8", 8.9, True, " 16 "])
def test_values_int_accepts_are_valid(object_info_033: dict, value: Any) -> None:
    assert validate_prompt({"1": empty_image(width=value), "2": SAVE}, object_info_033).node_errors == {}


def test_float_inputs_are_coerced_before_the_range_check(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "b": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": "0"}},
        "2": {**SAVE, "inputs": {"images": ["b", 0], "filename_prefix": "x"}},
    }
    reason = only_reason(rejected(prompt, object_info_033), "b")
    assert reason["message"] == "Value 0.0 smaller than min of 0.1"
    assert reason["extra_info"]["received_value"] == 0.0
    prompt["b"]["inputs"]["sigma"] = "x"
    reason = only_reason(rejected(prompt, object_info_033), "b")
    assert reason["details"] == "sigma, x, could not convert string to float: 'x'"


def test_non_finite_values_are_reported_as_strict_json(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "b": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": "inf"}},
        "2": {**SAVE, "inputs": {"images": ["b", 0], "filename_prefix": "x"}},
    }
    reason = only_reason(rejected(prompt, object_info_033), "b")
    assert reason["message"] == "Value inf bigger than max of 10.0"
    assert reason["extra_info"]["received_value"] == "inf"


def test_value_below_min_is_checked_before_max(object_info_033: dict) -> None:
    reason = only_reason(rejected({"1": empty_image(height=-1), "2": SAVE}, object_info_033), "1")
    assert (reason["type"], reason["details"]) == ("value_smaller_than_min", "height")


def test_every_failing_input_of_a_node_is_listed_in_declaration_order(object_info_033: dict) -> None:
    body = rejected(
        {"1": {"class_type": "EmptyImage", "inputs": {"height": "x", "color": -5}}, "2": SAVE},
        object_info_033,
    )
    errors = body["node_errors"]["1"]["errors"]
    assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [
        ("required_input_missing", "width"),
        ("invalid_input_type", "height"),
        ("required_input_missing", "batch_size"),
        ("value_smaller_than_min", "color"),
    ]


def test_value_not_in_a_short_list_echoes_the_list(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "s": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "cubic",
                "width": 8,
                "height": 8,
                "crop": "disabled",
            },
        },
        "2": {**SAVE, "inputs": {"images": ["s", 0], "filename_prefix": "x"}},
    }
    methods = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    reason = only_reason(rejected(prompt, object_info_033), "s")
    assert reason == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": f"upscale_method: 'cubic' not in {methods}",
        "extra_info": {
            "input_name": "upscale_method",
            "input_config": [methods, {}],
            "received_value": "cubic",
        },
    }
    prompt["s"]["inputs"]["upscale_method"] = 5
    assert (
        only_reason(rejected(prompt, object_info_033), "s")["details"]
        == f"upscale_method: 5 not in {methods}"
    )
    assert (
        only_reason(rejected(prompt, object_info_033, style="0.3"), "s")["details"]
        == f"upscale_method: '5' not in {methods}"
    )


def test_value_not_in_a_long_list_omits_the_list(object_info_033: dict) -> None:
    prompt = {
        "1": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "nope"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    reason = only_reason(rejected(prompt, object_info_033), "1")
    count = len(object_info_033["KSamplerSelect"]["input"]["required"]["sampler_name"][1]["options"])
    assert count > 20
    assert reason["details"] == f"sampler_name: 'nope' not in (list of length {count})"
    assert reason["extra_info"]["input_config"] is None


def test_v3_combo_options_are_checked_only_in_033_style(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "s": {
            "class_type": "ImageStitch",
            "inputs": {
                "image1": ["1", 0],
                "direction": "diagonal",
                "match_image_size": True,
                "spacing_width": 0,
                "spacing_color": "white",
            },
        },
        "2": {**SAVE, "inputs": {"images": ["s", 0], "filename_prefix": "x"}},
    }
    reason = only_reason(rejected(prompt, object_info_033), "s")
    assert reason["details"] == "direction: 'diagonal' not in ['right', 'down', 'left', 'up']"
    assert validate_prompt(prompt, object_info_033, style="0.3").node_errors == {}


# Small synthetic catalogue for rules no stock node shows.
SYNTHETIC = {
    "Source": {
        "input": {"required": {}},
        "output": ["INT,FLOAT", ["a", "b"], "STRING"],
        "output_node": False,
    },
    "Sink": {
        "input": {
            "required": {"number": ["FLOAT", {"forceInput": True, "min": 0.0}]},
            "optional": {
                "choice": ["COMBO", {"options": ["a", "b"], "multiselect": True}],
                "pair": ["INT,FLOAT", {}],
                "pick": ["COMBO", {"options": ["a", "b"]}],
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        },
        "output": [],
        "output_node": True,
    },
    "Uploader": {
        "input": {"required": {"clip": [["a.wav"], {"audio_upload": True}]}},
        "output": [],
        "output_node": True,
    },
    "ComfySoftSwitchNode": {
        "input": {
            "required": {"switch": ["BOOLEAN", {}]},
            "optional": {"on_false": ["*", {}], "on_true": ["*", {}]},
        },
        "output": ["*"],
        "output_node": True,
    },
}


def test_force_input_optional_and_hidden_inputs(object_info_033: dict) -> None:
    # forceInput only shapes the UI, so a literal is accepted; optional inputs may be absent;
    # hidden and undeclared inputs are ignored.
    prompt = {
        "1": {"class_type": "Sink", "inputs": {"number": "1.5", "unique_id": [1, 2, 3], "extra": "ignored"}}
    }
    assert validate_prompt(prompt, SYNTHETIC).outputs_to_execute == ["1"]


def test_comma_separated_types_link_by_overlap() -> None:
    prompt = {
        "0": {"class_type": "Source", "inputs": {}},
        "1": {"class_type": "Sink", "inputs": {"number": ["0", 0], "pair": ["0", 0], "pick": ["0", 1]}},
    }
    assert validate_prompt(prompt, SYNTHETIC).node_errors == {}
    prompt["1"]["inputs"]["pair"] = ["0", 2]
    reason = only_reason(rejected(prompt, SYNTHETIC), "1")
    assert reason["details"] == "pair, received_type(STRING) mismatch input_type(INT,FLOAT)"


def test_wrapped_literal_lists_and_multiselect_combos() -> None:
    prompt = {"1": {"class_type": "Sink", "inputs": {"number": 1, "choice": {"__value__": ["a", "b"]}}}}
    assert validate_prompt(prompt, SYNTHETIC).node_errors == {}
    prompt["1"]["inputs"]["choice"] = {"__value__": ["a", "x", "y"]}
    reason = only_reason(rejected(prompt, SYNTHETIC), "1")
    assert reason["details"] == "choice: 'x', 'y' not in ['a', 'b']"
    assert reason["extra_info"]["received_value"] == ["a", "x", "y"]


def test_string_against_a_numeric_bound_is_comfyuis_typeerror() -> None:
    prompt = {"1": {"class_type": "Sink", "inputs": {"number": 1.0, "pair": "x"}}}
    SYNTHETIC_BOUNDED = copy.deepcopy(SYNTHETIC)
    SYNTHETIC_BOUNDED["Sink"]["input"]["optional"]["pair"][1]["min"] = 0
    reason = only_reason(rejected(prompt, SYNTHETIC_BOUNDED), "1")
    assert reason["type"] == "exception_during_validation"
    assert reason["details"] == "'<' not supported between instances of 'str' and 'int'"


# --- V3 dynamic inputs ----------------------------------------------------------------------------


def resize(**inputs: Any) -> dict[str, Any]:
    return {"class_type": "ResizeImageMaskNode", "inputs": {"input": ["1", 0], **inputs}}


def test_dynamic_combo_inputs_use_dotted_names(object_info_033: dict) -> None:
    chosen = {
        "resize_type": "scale dimensions",
        "resize_type.width": 16,
        "resize_type.height": 16,
        "resize_type.crop": "center",
        "scale_method": "area",
    }
    prompt = {
        "1": empty_image(),
        "r": resize(**chosen),
        "2": {**SAVE, "inputs": {"images": ["r", 0], "filename_prefix": "x"}},
    }
    assert validate_prompt(prompt, object_info_033).node_errors == {}


def test_dynamic_combo_children_are_validated_like_other_inputs(object_info_033: dict) -> None:
    chosen = {
        "resize_type": "scale dimensions",
        "resize_type.width": 99999,
        "resize_type.crop": "center",
        "scale_method": "area",
    }
    prompt = {
        "1": empty_image(),
        "r": resize(**chosen),
        "2": {**SAVE, "inputs": {"images": ["r", 0], "filename_prefix": "x"}},
    }
    errors = rejected(prompt, object_info_033)["node_errors"]["r"]["errors"]
    assert [(e["type"], e["details"], e["extra_info"]["input_name"]) for e in errors] == [
        ("value_bigger_than_max", "resize_type.width", "resize_type.width"),
        ("required_input_missing", "height", "resize_type.height"),  # details: the last dotted segment
    ]


def test_unselected_dynamic_combo_is_not_required_like_in_comfyui(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "r": resize(scale_method="area"),
        "2": {**SAVE, "inputs": {"images": ["r", 0], "filename_prefix": "x"}},
    }
    assert validate_prompt(prompt, object_info_033).node_errors == {}


def test_autogrow_inputs_use_dotted_names(object_info_033: dict) -> None:
    batch = {
        "class_type": "BatchImagesNode",
        "inputs": {"images.image0": ["1", 0], "images.image1": ["1", 0]},
    }
    prompt = {
        "1": empty_image(),
        "b": batch,
        "2": {**SAVE, "inputs": {"images": ["b", 0], "filename_prefix": "x"}},
    }
    assert validate_prompt(prompt, object_info_033).node_errors == {}
    batch["inputs"] = {"images.image1": ["1", 0]}
    reason = only_reason(rejected(prompt, object_info_033), "b")
    assert (reason["type"], reason["details"], reason["extra_info"]) == (
        "required_input_missing",
        "image0",
        {"input_name": "images.image0"},
    )
    batch["inputs"] = {"images.image0": ["1", 0], "images.image3": ["b", 0], "images.image4": [0]}
    body = rejected(prompt, object_info_033)
    types = [e["type"] for e in body["node_errors"]["b"]["errors"]]
    assert types == ["dependency_cycle", "bad_linked_input"]


# --- outputs --------------------------------------------------------------------------------------


def test_failed_output_details_join_the_output_nodes_own_reasons(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(),
        "2": {"class_type": "SaveImage", "inputs": {}},
        "3": {"class_type": "PreviewImage", "inputs": {}},
    }
    body = rejected(prompt, object_info_033)
    assert body["error"]["details"] == (
        "Required input is missing: images\n"
        "Required input is missing: filename_prefix\n"  # SaveImage's second reason
        "Required input is missing: images"  # PreviewImage's
    )


def test_nodes_failing_before_a_later_failed_output_are_listed_as_its_dependents(
    object_info_033: dict,
) -> None:
    # ComfyUI's quirk: each failed output is added to every failed node validated so far.
    prompt = {
        "1": empty_image(width=0),
        "2": SAVE,
        "11": empty_image(height=0),
        "12": {**SAVE, "inputs": {"images": ["11", 0], "filename_prefix": "y"}},
    }
    body = rejected(prompt, object_info_033)
    assert body["node_errors"]["1"]["dependent_outputs"] == ["2", "12"]
    assert body["node_errors"]["11"]["dependent_outputs"] == ["12"]


def test_validation_does_not_modify_the_prompt(object_info_033: dict) -> None:
    prompt = {
        "1": empty_image(width="8", color={"__value__": 3}),
        "2": SAVE,
        "3": {**SAVE, "inputs": {"images": ["9", 0]}},
    }
    before = copy.deepcopy(prompt)
    result = validate_prompt(prompt, object_info_033)
    assert prompt == before
    result.node_errors["3"]["errors"][0]["extra_info"]["traceback"].clear()
    assert prompt == before


def test_error_bodies_do_not_alias_the_prompt(object_info_033: dict) -> None:
    prompt = {"1": empty_image(), "2": {**SAVE, "inputs": {"images": ["1"], "filename_prefix": "x"}}}
    body = rejected(prompt, object_info_033)
    only_reason(body, "2")["extra_info"]["received_value"].append("changed")
    assert prompt["2"]["inputs"]["images"] == ["1"]


# --- file inputs ----------------------------------------------------------------------------------


def load_image(name: Any = "probe.png") -> dict[str, Any]:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def test_load_image_checks_the_file_not_the_option_list(object_info_033: dict) -> None:
    prompt = {"1": load_image("sub/dir/upload.png"), "2": SAVE}
    seen: list[tuple[str, str]] = []

    def exists(class_type: str, name: str) -> bool:
        seen.append((class_type, name))
        return True

    assert validate_prompt(prompt, object_info_033, file_exists=exists).node_errors == {}
    assert seen == [("LoadImage", "sub/dir/upload.png")]


def test_missing_file_without_a_file_check_passes(object_info_033: dict) -> None:
    assert validate_prompt({"1": load_image("missing.png"), "2": SAVE}, object_info_033).node_errors == {}


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            {"class_type": "LoadImageMask", "inputs": {"image": "m.png", "channel": "alpha"}},
            "image - Invalid image file: m.png",
        ),
        (
            {"class_type": "LoadImageOutput", "inputs": {"image": "o.png [output]"}},
            "image - Invalid image file: o.png [output]",
        ),
        ({"class_type": "LoadVideo", "inputs": {"file": "v.mp4"}}, "file - Invalid video file: v.mp4"),
        ({"class_type": "LoadAudio", "inputs": {"audio": "a.wav"}}, "audio - Invalid audio file: a.wav"),
    ],
)
def test_file_loaders_report_their_own_message(object_info_033: dict, node: dict, message: str) -> None:
    prompt = {"1": node, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    reason = only_reason(rejected(prompt, object_info_033, file_exists=input_file_exists), "1")
    assert (reason["type"], reason["details"]) == ("custom_validation_failed", message)


def test_custom_check_comes_after_the_input_checks(object_info_033: dict) -> None:
    prompt = {
        "1": {"class_type": "LoadImageMask", "inputs": {"image": "m.png", "channel": "purple"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    errors = rejected(prompt, object_info_033, file_exists=input_file_exists)["node_errors"]["1"]["errors"]
    assert [e["type"] for e in errors] == ["value_not_in_list", "custom_validation_failed"]


def test_load_image_without_its_image_input_fails_like_the_validate_call(object_info_033: dict) -> None:
    reason = only_reason(
        rejected({"1": {"class_type": "LoadImage", "inputs": {}}, "2": SAVE}, object_info_033), "1"
    )
    assert reason["type"] == "exception_during_inner_validation"
    assert reason["details"] == "LoadImage.VALIDATE_INPUTS() missing 1 required positional argument: 'image'"
    assert reason["extra_info"]["exception_type"] == "TypeError"


def test_load_3d_accepts_none_and_reports_each_argument_on_a_missing_file(object_info_033: dict) -> None:
    node = {"class_type": "Load3D", "inputs": {"model_file": "none", "image": "", "width": 8, "height": 8}}
    prompt = {"1": node, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}
    assert validate_prompt(prompt, object_info_033, file_exists=input_file_exists).node_errors == {}
    node["inputs"]["model_file"] = "3d/m.glb"
    errors = rejected(prompt, object_info_033, file_exists=input_file_exists)["node_errors"]["1"]["errors"]
    assert [e["details"] for e in errors] == [
        f"{name} - Invalid 3D model file: 3d/m.glb" for name in ("model_file", "image", "width", "height")
    ]


def test_upload_combos_of_custom_nodes_are_checked_as_files() -> None:
    prompt = {"1": {"class_type": "Uploader", "inputs": {"clip": "b.wav"}}}
    assert validate_prompt(prompt, SYNTHETIC).node_errors == {}  # no file check: the listing is not used
    reason = only_reason(rejected(prompt, SYNTHETIC, file_exists=lambda c, n: False), "1")
    assert reason["details"] == "clip - Invalid audio file: b.wav"


def test_soft_switch_needs_one_branch() -> None:
    prompt = {"1": {"class_type": "ComfySoftSwitchNode", "inputs": {"switch": True}}}
    reason = only_reason(rejected(prompt, SYNTHETIC), "1")
    assert (
        reason["details"] == "switch - At least one of on_false or on_true must be connected to Switch node"
    )


def test_file_inputs_lists_every_uploaded_file(object_info_033: dict) -> None:
    prompt = {
        "1": load_image("probe.png"),
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "sub/m.png", "channel": "alpha"}},
        "3": {
            "class_type": "Painter",
            "inputs": {"mask": "painter/p.png", "width": 64, "height": 64, "bg_color": "#000000"},
        },
        "4": {"class_type": "Load3D", "inputs": {"model_file": "none", "width": 8, "height": 8}},
        "5": {"class_type": "LoadVideo", "inputs": {"file": ["9", 0]}},
        "6": {"class_type": "LoadAudio", "inputs": {"audio": "a.wav [output]"}},
        "7": {"class_type": "NotInstalled", "inputs": {"image": "x.png"}},
        "8": empty_image(),
    }
    assert file_inputs(prompt, object_info_033) == [
        ("1", "image", "probe.png"),
        ("2", "image", "sub/m.png"),
        ("3", "mask", "painter/p.png"),
        ("6", "audio", "a.wav [output]"),
    ]


def test_required_node_classes_are_the_graphs_class_types() -> None:
    prompt = {"1": empty_image(), "2": SAVE, "3": {**SAVE}, "4": {"inputs": {}}, "5": "junk"}
    assert required_node_classes(prompt) == {"EmptyImage", "SaveImage"}


# --- performance ----------------------------------------------------------------------------------


def test_validating_a_ten_node_graph_takes_well_under_a_millisecond(object_info_033: dict) -> None:
    prompt = {
        "1": load_image(),
        "2": empty_image(width=64, height=64, batch_size=2),
        "3": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 8, "height": 8}},
        "4": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["2", 0],
                "source": ["1", 0],
                "x": 4,
                "y": 4,
                "resize_source": False,
                "mask": ["3", 0],
            },
        },
        "5": {"class_type": "ImageBlur", "inputs": {"image": ["4", 0], "blur_radius": 2, "sigma": 1.0}},
        "6": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["5", 0],
                "upscale_method": "bilinear",
                "width": 128,
                "height": 96,
                "crop": "disabled",
            },
        },
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "combo/test"}},
        "8": {"class_type": "GetImageSize", "inputs": {"image": ["6", 0]}},
        "9": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    validate_prompt(prompt, object_info_033, file_exists=input_file_exists)  # warm the class cache
    runs = 500
    started = time.perf_counter()
    for _ in range(runs):
        validate_prompt(prompt, object_info_033, file_exists=input_file_exists)
    assert (time.perf_counter() - started) / runs < 0.001
