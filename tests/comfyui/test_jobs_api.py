"""The jobs API semantics, reproduced from the recorded 0.33.0 jobs, history, queue and WS fixtures."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from comfy_cloud.comfyui.jobs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    STATUSES,
    JobsQuery,
    JobsQueryError,
    OutputsSummary,
    execution_times,
    job_from_history,
    job_from_queue_item,
    job_status_from_history,
    normalize_outputs,
    output_media_types,
    page_jobs,
    parse_jobs_query,
    prune_none,
    summarize_outputs,
)

from .fixture_data import load

JOBS = load("http/jobs-list-0.33.0.json")["response"]["body"]["jobs"]
JOBS_BY_ID = {job["id"]: job for job in JOBS}


def query_of(path: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))


# --- query ----------------------------------------------------------------------------------------


def _recorded_list_requests() -> list[tuple[str, dict[str, Any]]]:
    exchanges = [load("http/jobs-list-0.33.0.json"), load("http/jobs-list-pending-0.33.0.json")]
    exchanges += load("http/jobs-list-variants-0.33.0.json")["exchanges"]
    return [(e["request"]["path"], e["response"]["body"]) for e in exchanges]


@pytest.mark.parametrize(("path", "body"), _recorded_list_requests())
def test_recorded_queries_parse_to_the_recorded_pagination(path: str, body: dict[str, Any]) -> None:
    query = parse_jobs_query(query_of(path), cloud=False)
    assert query.limit == body["pagination"]["limit"]
    assert query.offset == body["pagination"]["offset"]
    assert {job["status"] for job in body["jobs"]} <= query.statuses


def _recorded_query_errors() -> list[tuple[str, str]]:
    survey = load("http/endpoint-survey-0.33.0.json")["exchanges"]
    return [
        (e["request"]["path"], e["response"]["body"]["error"])
        for e in survey
        if e["request"]["path"].startswith("/api/jobs?") and e["response"]["status"] == 400
    ]


@pytest.mark.parametrize(("path", "message"), _recorded_query_errors())
def test_recorded_query_errors_have_comfyuis_exact_text(path: str, message: str) -> None:
    with pytest.raises(JobsQueryError) as caught:
        parse_jobs_query(query_of(path))
    assert caught.value.body == {"error": message}
    assert caught.value.status == 400


def test_recorded_query_errors_cover_status_limit_and_sort_by() -> None:
    assert len(_recorded_query_errors()) == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"status": "done,bogus,completed"},
            "Invalid status value(s): done, bogus. "
            "Valid values: pending, in_progress, completed, failed, cancelled",
        ),
        ({"sort_order": "up"}, "sort_order must be 'asc' or 'desc'"),
        ({"limit": "1.5"}, "limit must be an integer"),
        ({"limit": ""}, "limit must be an integer"),
        ({"limit": "-3"}, "limit must be a positive integer"),
        ({"offset": "x"}, "offset must be an integer"),
        ({"output_type": "pdf"}, "Invalid output_type value: pdf. Valid values: image, video, audio, 3d"),
        # ComfyUI's order of checks: status, sort_by, sort_order, limit, offset
        (
            {"status": "x", "sort_by": "x", "limit": "x"},
            "Invalid status value(s): x. Valid values: pending, in_progress, completed, failed, cancelled",
        ),
        ({"sort_by": "x", "sort_order": "x"}, "sort_by must be 'created_at' or 'execution_duration'"),
        ({"limit": "x", "offset": "x"}, "limit must be an integer"),
    ],
)
def test_invalid_queries_are_refused_with_comfyuis_text(params: dict[str, str], message: str) -> None:
    with pytest.raises(JobsQueryError) as caught:
        parse_jobs_query(params)
    assert caught.value.message == message


def test_query_defaults_for_the_cloud_and_for_comfyui() -> None:
    assert parse_jobs_query({}) == JobsQuery(statuses=frozenset(STATUSES), limit=100)
    assert parse_jobs_query({}, cloud=False).limit is None


def test_cloud_caps_the_limit_comfyui_does_not() -> None:
    assert parse_jobs_query({"limit": "5000"}).limit == 1000
    assert parse_jobs_query({"limit": "5000"}, cloud=False).limit == 5000
    assert parse_jobs_query({"limit": " 7 "}).limit == 7  # Python's int() accepts spaces


@pytest.mark.parametrize(
    ("sort_by", "normalized"),
    [
        ("created_at", "create_time"),
        ("CREATE_TIME", "create_time"),
        ("execution_duration", "execution_duration"),
        ("execution_time", "execution_duration"),
    ],
)
def test_comfyui_and_cloud_sort_spellings_are_both_accepted(sort_by: str, normalized: str) -> None:
    assert parse_jobs_query({"sort_by": sort_by, "sort_order": "ASC"}).sort_by == normalized
    assert parse_jobs_query({"sort_order": "ASC"}).sort_order == "asc"


def test_status_values_are_trimmed_lowercased_and_may_be_empty() -> None:
    assert parse_jobs_query({"status": " Completed , FAILED,"}).statuses == {COMPLETED, FAILED}
    assert parse_jobs_query({"status": ","}).statuses == frozenset()
    assert parse_jobs_query({"status": ""}).statuses == frozenset(STATUSES)


def test_negative_offset_becomes_zero_and_empty_filters_are_ignored() -> None:
    query = parse_jobs_query({"offset": "-4", "workflow_id": "", "output_type": ""})
    assert (query.offset, query.workflow_id, query.output_type) == (0, None, None)
    assert parse_jobs_query({"output_type": "3D"}).output_type == "3d"


# --- job items ------------------------------------------------------------------------------------


def test_job_detail_is_reproduced_from_the_history_entry() -> None:
    ((prompt_id, entry),) = load("http/history-entry-0.33.0.json")["response"]["body"].items()
    detail = load("http/jobs-detail-0.33.0.json")["response"]["body"]
    assert job_from_history(prompt_id, entry, include_outputs=True) == detail


def _recorded_history_entries() -> list[tuple[str, dict[str, Any]]]:
    entries: dict[str, dict[str, Any]] = {}
    for exchange in load("http/history-list-0.33.0.json")["exchanges"]:
        entries.update(exchange["response"]["body"])
    entries.update(load("http/history-entry-0.33.0.json")["response"]["body"])
    return sorted(entries.items())


@pytest.mark.parametrize(("prompt_id", "entry"), _recorded_history_entries())
def test_job_list_items_are_reproduced_from_history_entries(prompt_id: str, entry: dict[str, Any]) -> None:
    expected = dict(JOBS_BY_ID[prompt_id])
    assert job_from_history(prompt_id, entry) == expected
    summary = summarize_outputs(entry["outputs"])
    assert summary.outputs_count == expected["outputs_count"]
    assert summary.previewable_outputs_count == expected["previewable_outputs_count"]
    assert summary.preview_output == expected.get("preview_output")


def _history_from_ws(file: str) -> tuple[str, dict[str, Any]]:
    """The history entry a worker builds from the WS messages it relayed (no create_time there)."""
    recorded = load(file)
    prompt_id = recorded["response"]["body"]["prompt_id"]
    messages, outputs = [], {}
    for item in recorded["messages"]:
        message = item.get("message")
        if not message or message["data"].get("prompt_id") != prompt_id or item["client"] != "A":
            continue
        if message["type"] in (
            "execution_start",
            "execution_cached",
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ):
            messages.append([message["type"], message["data"]])
        elif message["type"] == "executed":
            outputs[message["data"]["node"]] = message["data"]["output"]
    success = any(event == "execution_success" for event, _ in messages)
    status = {"status_str": "success" if success else "error", "completed": success, "messages": messages}
    prompt = [
        recorded["response"]["body"]["number"],
        prompt_id,
        recorded["request"]["body"]["prompt"],
        {},
        [],
    ]
    return prompt_id, {"prompt": prompt, "outputs": outputs, "status": status}


@pytest.mark.parametrize(
    "file",
    ["ws/runtime-error-0.33.0.json", "ws/interrupt-targeted-0.33.0.json", "ws/cached-rerun-0.33.0.json"],
)
def test_jobs_rebuilt_from_relayed_ws_messages_match_the_recorded_jobs(file: str) -> None:
    prompt_id, entry = _history_from_ws(file)
    expected = {k: v for k, v in JOBS_BY_ID[prompt_id].items() if k != "create_time"}
    assert job_from_history(prompt_id, entry) == expected


def test_pending_list_is_reproduced_from_the_queue() -> None:
    queue = load("http/queue-0.33.0.json")["exchanges"][0]["response"]["body"]
    recorded = load("http/jobs-list-pending-0.33.0.json")
    jobs = [job_from_queue_item(item, "in_progress") for item in queue["queue_running"]]
    jobs += [job_from_queue_item(item, "pending") for item in queue["queue_pending"]]
    page, pagination = page_jobs(jobs, parse_jobs_query(query_of(recorded["request"]["path"])))
    assert {"jobs": page, "pagination": pagination} == recorded["response"]["body"]


@pytest.mark.parametrize("exchange", load("http/jobs-list-variants-0.33.0.json")["exchanges"])
def test_filtering_sorting_and_paging_match_the_recorded_variants(exchange: dict[str, Any]) -> None:
    query = parse_jobs_query(query_of(exchange["request"]["path"]), cloud=False)
    page, pagination = page_jobs(sorted(JOBS, key=lambda j: j["create_time"]), query)
    assert {"jobs": page, "pagination": pagination} == exchange["response"]["body"]


def test_terminal_list_is_sorted_newest_first() -> None:
    query = parse_jobs_query({"status": "completed,failed,cancelled", "limit": "200"})
    page, pagination = page_jobs(sorted(JOBS, key=lambda j: j["create_time"]), query)
    assert page == JOBS
    assert pagination == {"offset": 0, "limit": 200, "total": 12, "has_more": False}


def test_job_status_follows_the_history_status() -> None:
    interrupted = {"status_str": "error", "messages": [["execution_interrupted", {"timestamp": 5}]]}
    assert job_status_from_history({"status_str": "success", "messages": []}) == COMPLETED
    assert job_status_from_history({"status_str": "error", "messages": [["execution_error", {}]]}) == FAILED
    assert job_status_from_history(interrupted) == CANCELLED
    assert job_status_from_history(None) == COMPLETED
    assert job_status_from_history({}) == COMPLETED


def test_execution_times_come_from_start_and_terminal_messages() -> None:
    messages = [
        ["execution_start", {"timestamp": 10}],
        ["execution_cached", {"timestamp": 11}],
        ["execution_success", {"timestamp": 30}],
        ["junk"],
    ]
    assert execution_times(messages) == (10, 30)
    assert execution_times([]) == (None, None)
    assert execution_times(None) == (None, None)


def test_prune_none_omits_only_none() -> None:
    assert prune_none({"a": None, "b": 0, "c": "", "d": []}) == {"b": 0, "c": "", "d": []}


# --- outputs summary ------------------------------------------------------------------------------


def image(name: str, kind: str = "output", **extra: Any) -> dict[str, Any]:
    return {"filename": name, "subfolder": "", "type": kind, **extra}


def test_saved_media_outranks_temp_previews_and_text() -> None:
    outputs = {
        "7": {"text": ["8"]},
        "5": {"images": [image("t.png", "temp")]},
        "9": {"images": [image("notes.txt")]},
        "4": {"images": [image("a.png"), image("b.png")], "animated": [False]},
    }
    summary = summarize_outputs(outputs)
    assert (summary.outputs_count, summary.previewable_outputs_count) == (4, 4)
    assert summary.preview_output == {**image("a.png"), "nodeId": "4", "mediaType": "images"}


def test_temp_preview_outranks_text_files_which_outrank_raw_text() -> None:
    text_file = {"9": {"files": [image("notes.md")]}}
    assert (
        summarize_outputs({**text_file, "5": {"images": [image("t.png", "temp")]}}).preview_output["filename"]
        == "t.png"
    )
    assert summarize_outputs({"7": {"text": ["hi"]}, **text_file}).preview_output == {
        **image("notes.md"),
        "nodeId": "9",
        "mediaType": "files",
    }
    assert summarize_outputs({"7": {"text": ["hi"]}}) == OutputsSummary(
        0, 0, {"content": "hi", "nodeId": "7", "mediaType": "text"}
    )


def test_text_preview_is_truncated_at_1024_characters() -> None:
    assert summarize_outputs({"1": {"text": ["x" * 1024]}}).preview_output == {
        "content": "x" * 1024,
        "nodeId": "1",
        "mediaType": "text",
    }
    assert summarize_outputs({"1": {"text": ["y" * 1025]}}).preview_output == {
        "content": "y" * 1024,
        "truncated": True,
        "nodeId": "1",
        "mediaType": "text",
    }


def test_3d_file_names_are_counted_as_3d_outputs() -> None:
    outputs = {"3": {"3d": ["mesh.GLB", "readme"]}}
    summary = summarize_outputs(outputs)
    assert (summary.outputs_count, summary.previewable_outputs_count) == (1, 1)
    assert summary.preview_output == {
        "filename": "mesh.GLB",
        "type": "output",
        "subfolder": "",
        "mediaType": "3d",
        "nodeId": "3",
    }
    assert normalize_outputs({"3": {"3d": ["mesh.GLB", None, "readme"], "animated": [None]}}) == {
        "3": {
            "3d": [{"filename": "mesh.GLB", "type": "output", "subfolder": "", "mediaType": "3d"}, "readme"],
            "animated": [None],
        }
    }


def test_unpreviewable_files_count_but_do_not_preview() -> None:
    outputs = {
        "2": {"latents": [image("x.latent")]},
        "3": {"gifs": [image("v.mp4", format="video/h264-mp4")]},
    }
    summary = summarize_outputs(outputs)
    assert (summary.outputs_count, summary.previewable_outputs_count) == (2, 1)
    assert summary.preview_output["filename"] == "v.mp4"
    assert summary.preview_output["mediaType"] == "gifs"


def test_no_outputs_has_no_preview() -> None:
    assert summarize_outputs({}) == OutputsSummary(0, 0, None)
    assert summarize_outputs({"1": "junk", "2": {"images": "junk"}}) == OutputsSummary(0, 0, None)


@pytest.mark.parametrize(
    ("outputs", "media"),
    [
        ({"1": {"images": [image("a.png")]}}, {"image"}),
        ({"1": {"images": [image("clip.mp4")], "animated": [True]}}, {"video"}),
        ({"1": {"gifs": [image("a.webp", format="image/webp")]}}, {"image"}),
        ({"1": {"gifs": [image("a.mp4", format="video/h264-mp4")]}}, {"video"}),
        ({"1": {"audio": [image("a.flac")]}}, {"audio"}),
        ({"1": {"3d": ["m.glb"]}, "2": {"result": [image("s.ply")]}}, {"3d"}),
        ({"1": {"text": ["hello"]}, "2": {"latents": [image("x.latent")]}}, set()),
    ],
)
def test_output_media_types_for_the_output_type_filter(outputs: dict[str, Any], media: set[str]) -> None:
    assert output_media_types(outputs) == media
