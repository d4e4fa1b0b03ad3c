"""Prompt validation against the recorded ComfyUI responses (errors/, ws/, http/ and workflows/)."""

from __future__ import annotations

from typing import Any

import pytest

from comfy_cloud.comfyui.validation import (
    PromptError,
    ValidationResult,
    check_prompt_request,
    validate_prompt,
)

from .fixture_data import (
    FIXTURES,
    STYLE,
    error_fixture_files,
    input_file_exists,
    load,
    object_info,
    recorded_prompt_posts,
    tracebacks,
    version_of,
    without_tracebacks,
)


def submit(body: Any, version: str) -> ValidationResult:
    """What the gateway does with a POST /prompt body."""
    style = STYLE[version]
    check_prompt_request(body, style=style)
    return validate_prompt(
        body["prompt"],
        object_info(version),
        partial_execution_targets=body.get("partial_execution_targets"),
        style=style,
        file_exists=input_file_exists,
    )


def _json_error_files() -> list[str]:
    return [f for f in error_fixture_files() if load(f)["response"]["status"] == 400]


def assert_same_error_body(ours: dict[str, Any], recorded: dict[str, Any]) -> None:
    assert without_tracebacks(ours) == without_tracebacks(recorded)
    # Tracebacks are ours, but present wherever ComfyUI sends one, as lists of strings.
    ours_tbs, recorded_tbs = tracebacks(ours), tracebacks(recorded)
    assert len(ours_tbs) == len(recorded_tbs)
    assert all(isinstance(tb, list) and tb and all(isinstance(s, str) for s in tb) for tb in ours_tbs)


@pytest.mark.parametrize("relative", _json_error_files())
def test_every_recorded_400_error_body_is_reproduced(relative: str) -> None:
    recorded = load(relative)
    with pytest.raises(PromptError) as caught:
        submit(recorded["request"]["body"], version_of(recorded))
    assert caught.value.status == 400
    assert_same_error_body(caught.value.body, recorded["response"]["body"])


def test_prompt_that_is_a_list_gets_a_400_instead_of_comfyuis_500() -> None:
    recorded = load("errors/0.3.64/prompt_is_list.json")
    assert recorded["response"]["status"] == 500
    with pytest.raises(PromptError) as caught:
        submit(recorded["request"]["body"], "0.3.64")
    assert caught.value.status == 400
    assert caught.value.body["error"]["type"] == "invalid_prompt"
    assert caught.value.body["node_errors"] == {}


def test_all_error_fixtures_are_covered() -> None:
    # Only malformed JSON (a parse failure before our code runs) and prompt_is_list are not 400 bodies.
    others = set(error_fixture_files()) - set(_json_error_files())
    assert others == {"errors/0.3.64/malformed_json.json", "errors/0.3.64/prompt_is_list.json"}
    assert len(_json_error_files()) == 22


def _queued_outputs() -> dict[str, set[str]]:
    """prompt_id -> outputs_to_execute, from every recorded queue item / history prompt tuple."""
    found: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            if (
                len(node) == 5
                and isinstance(node[1], str)
                and isinstance(node[2], dict)
                and isinstance(node[4], list)
            ):
                found[node[1]] = set(node[4])
            for value in node:
                walk(value)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    for file in FIXTURES.rglob("*.json"):
        if not file.name.startswith("object_info"):
            walk(load(str(file.relative_to(FIXTURES))))
    return found


RECORDED_POSTS = recorded_prompt_posts()


@pytest.mark.parametrize(
    ("version", "where", "exchange"), RECORDED_POSTS, ids=[w for _, w, _ in RECORDED_POSTS]
)
def test_every_recorded_prompt_submission_gets_the_recorded_answer(
    version: str, where: str, exchange: dict[str, Any]
) -> None:
    response = exchange["response"]
    if response["status"] != 200:
        with pytest.raises(PromptError) as caught:
            submit(exchange["request"]["body"], version)
        assert caught.value.status == response["status"]
        assert_same_error_body(caught.value.body, response["body"])
        return
    result = submit(exchange["request"]["body"], version)
    assert result.node_errors == response["body"]["node_errors"]
    queued = _queued_outputs().get(response["body"]["prompt_id"])
    if queued is not None:
        assert set(result.outputs_to_execute) == queued


def test_partial_execution_targets_select_the_recorded_output() -> None:
    recorded = load("ws/partial-execution-0.33.0.json")
    assert recorded["request"]["body"]["partial_execution_targets"] == ["5"]
    assert submit(recorded["request"]["body"], "0.33.0").outputs_to_execute == ["5"]


@pytest.mark.parametrize(
    ("workflow", "version"),
    [
        ("basic_invert", "0.3.64"),
        ("basic_invert", "0.33.0"),
        ("preview_image", "0.3.64"),
        ("slow_blur_chain", "0.3.64"),
        ("websocket_image", "0.3.64"),
        ("runtime_error_save_outside", "0.3.64"),
        ("loadimage_invert", "0.3.64"),
        ("p1-minimal-image-pipeline", "0.33.0"),
        ("p2-upload-composite-scale", "0.33.0"),
        ("p3-ws-coverage", "0.33.0"),
        ("p4-latent-path-pixel-space-vae", "0.33.0"),
    ],
)
def test_recorded_workflows_pass_validation(workflow: str, version: str) -> None:
    prompt = load(f"workflows/{workflow}.json")
    result = submit({"prompt": prompt}, version)
    assert result.node_errors == {}
    outputs = {nid for nid, node in prompt.items() if object_info(version)[node["class_type"]]["output_node"]}
    assert set(result.outputs_to_execute) == outputs


def test_width_zero_is_rejected_below_min() -> None:
    with pytest.raises(PromptError) as caught:
        submit({"prompt": load("workflows/p5a-validation-error-width0.json")}, "0.33.0")
    (entry,) = caught.value.body["node_errors"].values()
    assert [e["type"] for e in entry["errors"]] == ["value_smaller_than_min"]
    assert entry["errors"][0]["message"] == "Value 0 smaller than min of 1"


def test_partially_valid_prompt_is_accepted_with_node_errors() -> None:
    result = submit({"prompt": load("workflows/p5b-partial-validity.json")}, "0.33.0")
    assert result.outputs_to_execute == ["13"]
    assert list(result.node_errors) == ["1"]
    assert result.node_errors["1"]["dependent_outputs"] == ["3"]
    assert result.node_errors["1"]["errors"][0]["type"] == "value_smaller_than_min"


@pytest.mark.parametrize(
    ("workflow", "error_file"),
    [
        ("invalid_unknown_class_type", "unknown_class_type"),
        ("invalid_missing_class_type", "missing_class_type"),
        ("invalid_missing_required_input", "missing_required_input"),
        ("invalid_bad_int_value", "bad_int_value"),
        ("invalid_value_below_min", "value_below_min"),
        ("invalid_link_to_missing_node", "link_to_missing_node"),
        ("invalid_bad_output_index", "bad_output_index"),
        ("invalid_type_mismatch_LATENT_to_IMAGE", "type_mismatch_LATENT_to_IMAGE"),
        ("invalid_no_output_node", "no_output_node"),
    ],
)
def test_invalid_workflows_fail_like_their_recorded_errors(workflow: str, error_file: str) -> None:
    recorded = load(f"errors/0.3.64/{error_file}.json")
    prompt = load(f"workflows/{workflow}.json")
    assert recorded["request"]["body"]["prompt"] == prompt
    with pytest.raises(PromptError) as caught:
        submit({"prompt": prompt}, "0.3.64")
    assert_same_error_body(caught.value.body, recorded["response"]["body"])
