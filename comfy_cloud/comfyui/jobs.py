"""The jobs API of ComfyUI 0.33.0 (`GET /api/jobs`, `GET /api/jobs/{id}`; protocol reference §3.4).

Query parsing with ComfyUI's exact error strings (plus the Comfy Cloud spellings and `output_type`), the
job item built from a history entry or a queue item, and the outputs summary (counts and preview choice).
Reference responses: tests/fixtures/comfyui/http/jobs-*.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

PENDING = "pending"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)  # ComfyUI's order, used in its error text
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

OUTPUT_TYPES = ("image", "video", "audio", "3d")  # Comfy Cloud's output_type filter
DEFAULT_LIMIT = 100  # Cloud defaults; ComfyUI itself has no default limit
MAX_LIMIT = 1000

SortBy = Literal["create_time", "execution_duration"]
SortOrder = Literal["asc", "desc"]

# ComfyUI's sort_by values and Comfy Cloud's, mapped to ours.
_SORT_BY: Mapping[str, SortBy] = {
    "created_at": "create_time",
    "create_time": "create_time",
    "execution_duration": "execution_duration",
    "execution_time": "execution_duration",
}

PREVIEWABLE_MEDIA_TYPES = frozenset({"images", "video", "audio", "3d", "text"})
THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")  # ComfyUI's list for previews
TEXT_EXTENSIONS = (".txt", ".md", ".json")  # what SaveText writes
TEXT_PREVIEW_MAX_LENGTH = 1024


class JobsQueryError(ValueError):
    """A rejected jobs query; ComfyUI answers 400 `{"error": message}`."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.message}


@dataclass(frozen=True, slots=True)
class JobsQuery:
    statuses: frozenset[str]  # all five when the parameter is absent; may be empty ("status=,")
    workflow_id: str | None = None
    output_type: str | None = None
    sort_by: SortBy = "create_time"
    sort_order: SortOrder = "desc"
    offset: int = 0
    limit: int | None = None  # None only with cloud=False and no limit given (ComfyUI answers null)


def prune_none(d: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None: job items omit absent fields instead of sending null."""
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# Query
# --------------------------------------------------------------------------------------------------


def parse_jobs_query(params: Mapping[str, str], *, cloud: bool = True) -> JobsQuery:
    """Parse `GET /api/jobs` parameters in ComfyUI's order of checks.

    cloud=True applies Comfy Cloud's paging: limit defaults to 100 and is capped at 1000, so the response's
    `pagination.limit` is always a number (the frontend's schema requires one).
    """
    statuses = _parse_statuses(params.get("status"))
    sort_by = _SORT_BY.get(params.get("sort_by", "created_at").lower())
    if sort_by is None:
        raise JobsQueryError("sort_by must be 'created_at' or 'execution_duration'")
    sort_order = params.get("sort_order", "desc").lower()
    if sort_order not in ("asc", "desc"):
        raise JobsQueryError("sort_order must be 'asc' or 'desc'")
    output_type = _parse_output_type(params.get("output_type"))
    limit = _parse_limit(params, cloud)  # checked before offset, as in ComfyUI
    return JobsQuery(
        statuses=statuses,
        workflow_id=params.get("workflow_id") or None,  # ComfyUI ignores an empty workflow_id
        output_type=output_type,
        sort_by=sort_by,
        sort_order=sort_order,  # type: ignore[arg-type]
        offset=_parse_offset(params),
        limit=limit,
    )


def _parse_statuses(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset(STATUSES)
    wanted = [s.strip().lower() for s in raw.split(",") if s.strip()]
    invalid = [s for s in wanted if s not in STATUSES]
    if invalid:
        raise JobsQueryError(
            f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(STATUSES)}"
        )
    return frozenset(wanted)


def _parse_output_type(raw: str | None) -> str | None:
    if not raw:
        return None
    value = raw.strip().lower()
    if value not in OUTPUT_TYPES:
        raise JobsQueryError(f"Invalid output_type value: {raw}. Valid values: {', '.join(OUTPUT_TYPES)}")
    return value


def _parse_limit(params: Mapping[str, str], cloud: bool) -> int | None:
    if "limit" not in params:
        return DEFAULT_LIMIT if cloud else None
    try:
        limit = int(params["limit"])  # Python's int(): surrounding spaces, "+5" and "1_0" are accepted
    except (TypeError, ValueError):
        raise JobsQueryError("limit must be an integer") from None
    if limit <= 0:
        raise JobsQueryError("limit must be a positive integer")
    return min(limit, MAX_LIMIT) if cloud else limit


def _parse_offset(params: Mapping[str, str]) -> int:
    if "offset" not in params:
        return 0
    try:
        offset = int(params["offset"])
    except (TypeError, ValueError):
        raise JobsQueryError("offset must be an integer") from None
    return max(offset, 0)  # a negative offset becomes 0


# --------------------------------------------------------------------------------------------------
# Outputs summary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputsSummary:
    outputs_count: int
    previewable_outputs_count: int
    preview_output: dict[str, Any] | None


def _lower_name(item: Mapping[str, Any]) -> str:
    name = item.get("filename")
    return name.lower() if isinstance(name, str) else ""


def _has_3d_extension(name: str) -> bool:
    return name.lower().endswith(THREE_D_EXTENSIONS)


def _normalize_item(item: Any) -> dict[str, Any] | None:
    """A countable output item: dicts as they are, 3D file names as file dicts, anything else None."""
    if isinstance(item, dict):
        return item
    if isinstance(item, str) and _has_3d_extension(item):
        return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"}
    return None


def _is_previewable(media_type: str, item: Mapping[str, Any]) -> bool:
    if media_type in PREVIEWABLE_MEDIA_TYPES:
        return True
    fmt = item.get("format")
    if isinstance(fmt, str) and fmt.startswith(("video/", "audio/")):
        return True
    return _lower_name(item).endswith(THREE_D_EXTENSIONS + TEXT_EXTENSIONS)


def _is_text(media_type: str, item: Mapping[str, Any]) -> bool:
    return media_type == "text" or _lower_name(item).endswith(TEXT_EXTENSIONS)


def _text_preview(item: Any) -> dict[str, Any]:
    text = (item[0] if item else "") if isinstance(item, tuple) else str(item)
    if len(text) <= TEXT_PREVIEW_MAX_LENGTH:
        return {"content": text}
    return {"content": text[:TEXT_PREVIEW_MAX_LENGTH], "truncated": True}


def _output_items(outputs: Mapping[str, Any]) -> Iterable[tuple[str, str, Any]]:
    # (node_id, media_type, item) for every listed item; "animated" is a flag, not items.
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                yield node_id, media_type, item


class _PreviewChoice:
    """ComfyUI's preference: saved visual media, then other visual media (temp previews), then a saved
    text file, then raw text; text never outranks visual media whatever the node order."""

    def __init__(self) -> None:
        self.output: dict[str, Any] | None = None
        self.visual: dict[str, Any] | None = None
        self.text_file: dict[str, Any] | None = None
        self.text: dict[str, Any] | None = None

    def offer(self, node_id: str, media_type: str, item: dict[str, Any]) -> None:
        if self.output is not None or not _is_previewable(media_type, item):
            return
        candidate = {**item, "nodeId": node_id}
        candidate.setdefault("mediaType", media_type)
        if _is_text(media_type, item):
            self.text_file = self.text_file or candidate
        elif item.get("type") == "output":
            self.output = candidate
        else:
            self.visual = self.visual or candidate

    def offer_text(self, node_id: str, media_type: str, item: Any) -> None:
        if self.output is None and self.text is None:
            self.text = {**_text_preview(item), "nodeId": node_id, "mediaType": media_type}

    def best(self) -> dict[str, Any] | None:
        return self.output or self.visual or self.text_file or self.text


def summarize_outputs(outputs: Mapping[str, Any]) -> OutputsSummary:
    """outputs_count, previewable_outputs_count and preview_output of a job, as ComfyUI computes them.

    Counted: dict items and 3D file names; plain text strings are preview-only and not counted.
    """
    count = previewable = 0
    choice = _PreviewChoice()
    for node_id, media_type, raw in _output_items(outputs):
        item = _normalize_item(raw)
        if item is None:
            if media_type == "text":  # even None, shown as "None" like ComfyUI
                choice.offer_text(node_id, media_type, raw)
            continue
        count += 1
        if _is_previewable(media_type, item):
            previewable += 1
        choice.offer(node_id, media_type, item)
    return OutputsSummary(count, previewable, choice.best())


def normalize_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The `outputs` of a job detail: 3D file names become file dicts, None items are dropped."""
    normalized: dict[str, Any] = {}
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            normalized[node_id] = node_outputs
            continue
        normalized[node_id] = {
            media_type: (
                [_normalize_item(item) or item for item in items if item is not None]
                if media_type != "animated" and isinstance(items, list)
                else items
            )
            for media_type, items in node_outputs.items()
        }
    return normalized


_VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
_AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac")
_3D_FILE_EXTENSIONS = (*THREE_D_EXTENSIONS, ".stl", ".ply", ".splat", ".spz", ".ksplat")
_MEDIA_BY_KEY = {
    "images": "image",
    "video": "video",
    "videos": "video",
    "gifs": "video",
    "audio": "audio",
    "3d": "3d",
}


def _media_of(media_type: str, item: Mapping[str, Any]) -> str | None:
    declared = item.get("mediaType")
    if isinstance(declared, str) and declared in _MEDIA_BY_KEY:
        media_type = declared
    fmt = item.get("format")
    if isinstance(fmt, str) and fmt.startswith(("video/", "audio/", "image/")):
        return fmt.split("/", 1)[0]
    name = _lower_name(item)
    if name.endswith(_3D_FILE_EXTENSIONS):
        return "3d"
    if name.endswith(_VIDEO_EXTENSIONS):  # SaveVideo lists its file under "images" with animated: [true]
        return "video"
    if name.endswith(_AUDIO_EXTENSIONS):
        return "audio"
    return _MEDIA_BY_KEY.get(media_type)


def output_media_types(outputs: Mapping[str, Any]) -> set[str]:
    """The Cloud `output_type` values ("image", "video", "audio", "3d") a job's outputs contain.

    Judged per item by its MIME `format`, then its file extension, then the key it is listed under.
    """
    found: set[str] = set()
    for _, media_type, raw in _output_items(outputs):
        item = _normalize_item(raw)
        if item is not None:
            media = _media_of(media_type, item)
            if media is not None:
                found.add(media)
    return found


# --------------------------------------------------------------------------------------------------
# Job items
# --------------------------------------------------------------------------------------------------

_TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


def _events(messages: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    for entry in messages or ():
        if isinstance(entry, list | tuple) and len(entry) >= 2 and isinstance(entry[1], dict):
            yield entry[0], entry[1]


def execution_times(messages: Any) -> tuple[int | None, int | None]:
    """(start_ms, end_ms) from a history entry's `status.messages`; the last terminal message wins."""
    start = end = None
    for event, data in _events(messages):
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in _TERMINAL_EVENTS:
            end = data.get("timestamp")
    return start, end


def execution_error(messages: Any) -> dict[str, Any] | None:
    """The payload of the `execution_error` message, if any (the failed job's `execution_error`)."""
    found = None
    for event, data in _events(messages):
        if event == "execution_error":
            found = data
    return found


def job_status_from_history(status: Mapping[str, Any] | None) -> str:
    """completed / failed / cancelled from a history `status` (an interrupt is stored as an error)."""
    if not status or status.get("status_str") != "error":
        return COMPLETED  # "success", and anything unexpected, counts as completed in ComfyUI
    interrupted = any(event == "execution_interrupted" for event, _ in _events(status.get("messages")))
    return CANCELLED if interrupted else FAILED


def _job_metadata(extra_data: Any) -> tuple[Any, Any]:
    """(create_time, workflow_id) from a prompt's extra_data."""
    if not isinstance(extra_data, dict):
        return None, None
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    workflow_id = workflow.get("id") if isinstance(workflow, dict) else None
    return extra_data.get("create_time"), workflow_id


def job_from_queue_item(item: list | tuple, status: str) -> dict[str, Any]:
    """A pending or in_progress job from a queue item [number, prompt_id, prompt, extra_data, outputs]."""
    create_time, workflow_id = _job_metadata(item[3])
    return prune_none(
        {
            "id": item[1],
            "status": status,
            "priority": item[0],
            "create_time": create_time,
            "outputs_count": 0,
            "previewable_outputs_count": 0,
            "workflow_id": workflow_id,
        }
    )


def job_from_history(
    prompt_id: str, entry: Mapping[str, Any], *, include_outputs: bool = False
) -> dict[str, Any]:
    """A finished job from a history entry; include_outputs gives the detail view (`GET /api/jobs/{id}`)."""
    priority, _, prompt, extra_data = entry["prompt"][:4]
    create_time, workflow_id = _job_metadata(extra_data)
    status = entry.get("status") or {}
    messages = status.get("messages") if isinstance(status, dict) else None
    outputs = entry.get("outputs") or {}
    summary = summarize_outputs(outputs)
    start, end = execution_times(messages)
    job = prune_none(
        {
            "id": prompt_id,
            "status": job_status_from_history(status),
            "priority": priority,
            "create_time": create_time,
            "execution_start_time": start,
            "execution_end_time": end,
            "execution_error": execution_error(messages),
            "outputs_count": summary.outputs_count,
            "previewable_outputs_count": summary.previewable_outputs_count,
            "preview_output": summary.preview_output,
            "workflow_id": workflow_id,
        }
    )
    if include_outputs:
        job["outputs"] = normalize_outputs(outputs)
        job["execution_status"] = entry.get("status", {})
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _sort_key(sort_by: SortBy) -> Any:
    if sort_by == "execution_duration":

        def duration(job: Mapping[str, Any]) -> int:
            start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
            return end - start if end and start else 0

        return duration
    return lambda job: job.get("create_time", 0)


def sort_jobs(jobs: Iterable[Mapping[str, Any]], sort_by: SortBy, sort_order: SortOrder) -> list:
    """Stable sort like ComfyUI (ties keep their order; unknown times count as 0)."""
    return sorted(jobs, key=_sort_key(sort_by), reverse=sort_order == "desc")


def page_jobs(jobs: Iterable[Mapping[str, Any]], query: JobsQuery) -> tuple[list, dict[str, Any]]:
    """Filter by status and workflow_id, sort and page in memory, as ComfyUI does; returns (jobs,
    pagination). The output_type filter needs the outputs and is left to the caller."""
    selected = [
        job
        for job in jobs
        if job.get("status") in query.statuses
        and (query.workflow_id is None or job.get("workflow_id") == query.workflow_id)
    ]
    ordered = sort_jobs(selected, query.sort_by, query.sort_order)
    page = ordered[query.offset :]
    if query.limit is not None:
        page = page[: query.limit]
    pagination = {
        "offset": query.offset,
        "limit": query.limit,
        "total": len(ordered),
        "has_more": query.offset + len(page) < len(ordered),
    }
    return page, pagination
