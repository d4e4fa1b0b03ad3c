"""HTTP client for the one ComfyUI server beside this instance.

Errors:
* ComfyUIError: ComfyUI answered something unexpected
  - ComfyUIUnavailable (503): it did not answer (down, restarting, timed out) or failed with a 5xx
  - PromptRejected (400): `POST /prompt` refused the prompt (`error` and `node_errors` as ComfyUI sent them)
  - ViewNotFound (404): `/view` has no such file (e.g. a temp file lost in a restart)
  - PromptIdIgnored: ComfyUI older than 0.3.45 queued the prompt under an id of its own

No request carries an `Origin` header: a loopback ComfyUI refuses a mismatched one with 403 (§1.2).
Version differences are found out by trying, once: the jobs API (0.6.0+), per-job cancel (0.26.0+).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from comfy_cloud.errors import AppError, BadRequest, NotFound, ServiceUnavailable

log = logging.getLogger(__name__)


class ComfyUIError(AppError):
    """ComfyUI answered unexpectedly."""

    status_code = 502


class ComfyUIUnavailable(ComfyUIError, ServiceUnavailable):
    """ComfyUI is unavailable."""

    status_code = 503


class PromptRejected(ComfyUIError, BadRequest):
    """ComfyUI refused the prompt."""

    status_code = 400

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        self.error = error
        self.node_errors = node_errors
        super().__init__(str(error.get("message") or "prompt rejected"))


class PromptIdIgnored(ComfyUIError):
    """This ComfyUI does not take a client's prompt_id (before 0.3.45): unsupported."""


class ViewNotFound(ComfyUIError, NotFound):
    """ComfyUI has no such file."""

    status_code = 404


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    running: frozenset[str]
    pending: frozenset[str]


@contextlib.contextmanager
def _map_errors(what: str) -> Iterator[None]:
    """Translate httpx failures once, here: a transport problem means ComfyUI is unavailable."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        error = ComfyUIUnavailable if code >= 500 else ComfyUIError
        raise error(f"{what}: ComfyUI answered {code}") from exc
    except httpx.TransportError as exc:
        raise ComfyUIUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


class ComfyUIClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": "comfy-cloud-inference"},
            follow_redirects=False,
        )
        # None until found out; ComfyUI versions differ (protocol reference §8.1).
        self.has_jobs_api: bool | None = None
        self.has_job_cancel: bool | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def ws_url(self, client_id: str) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        return f"{scheme}://{self.base_url.split('://', 1)[1]}/ws?clientId={client_id}"

    # -- execution ---------------------------------------------------------------------------------

    async def submit(
        self, prompt: dict[str, Any], *, prompt_id: str, client_id: str, extra_data: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue the prompt under our prompt_id; a 400 raises PromptRejected."""
        body = {"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id, "extra_data": extra_data}
        with _map_errors("POST /prompt"):
            response = await self._http.post("/api/prompt", json=body)
            if response.status_code == 400:
                answer = _json_or_none(response) or {}
                error = answer.get("error")
                if not isinstance(error, dict):
                    error = {"type": "invalid_prompt", "message": str(error or "prompt rejected")}
                raise PromptRejected(error, answer.get("node_errors") or {})
            response.raise_for_status()
            answer = response.json()
        if answer.get("prompt_id") != prompt_id:
            # ComfyUI before 0.3.45 ignores a client's prompt_id: its events would never be ours.
            await self.cancel(str(answer.get("prompt_id")))
            raise PromptIdIgnored(f"ComfyUI queued the prompt as {answer.get('prompt_id')}, not {prompt_id}")
        if answer.get("node_errors"):
            log.warning("ComfyUI dropped outputs that failed validation: %s", sorted(answer["node_errors"]))
        return answer

    async def cancel(self, prompt_id: str) -> None:
        """Stop the prompt whether pending or running: per-job cancel (0.26+), else dequeue it and
        interrupt it by id (0.3.57+; older servers interrupt whatever runs, which is ours anyway)."""
        if self.has_job_cancel is not False:
            with _map_errors("POST /api/jobs/{id}/cancel"):
                response = await self._http.post(f"/api/jobs/{prompt_id}/cancel")
                if response.status_code in (404, 405):
                    self.has_job_cancel = False
                else:
                    response.raise_for_status()
                    self.has_job_cancel = True
                    return
        with _map_errors("POST /queue delete"):
            (await self._http.post("/api/queue", json={"delete": [prompt_id]})).raise_for_status()
        with _map_errors("POST /interrupt"):
            (await self._http.post("/api/interrupt", json={"prompt_id": prompt_id})).raise_for_status()

    # -- state of a prompt -------------------------------------------------------------------------

    async def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry, or None while the prompt has not finished (or was forgotten)."""
        with _map_errors("GET /history/{id}"):
            response = await self._http.get(f"/api/history/{prompt_id}")
            response.raise_for_status()
            entry = response.json().get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def job(self, prompt_id: str) -> dict[str, Any] | None:
        """`GET /api/jobs/{id}` (0.6.0+): the job, or None if unknown. Sets has_jobs_api; callers
        check it first and use queue/history on servers without the jobs API."""
        with _map_errors("GET /api/jobs/{id}"):
            response = await self._http.get(f"/api/jobs/{prompt_id}")
            if response.status_code == 404:
                # ComfyUI's "Job not found" is JSON; a missing route is aiohttp's plain text.
                self.has_jobs_api = isinstance(_json_or_none(response), dict)
                return None
            response.raise_for_status()
            self.has_jobs_api = True
            return response.json()

    async def queue(self) -> QueueSnapshot:
        with _map_errors("GET /queue"):
            response = await self._http.get("/api/queue")
            response.raise_for_status()
            body = response.json()
        return QueueSnapshot(
            running=frozenset(_ids(body.get("queue_running"))),
            pending=frozenset(_ids(body.get("queue_pending"))),
        )

    # -- files -------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def view(self, filename: str, subfolder: str, type_: str) -> AsyncIterator[httpx.Response]:
        """Stream one file from `/view`; iterate `response.aiter_bytes()` inside the block."""
        params = {"filename": filename, "subfolder": subfolder, "type": type_}
        with _map_errors("GET /view"):
            async with self._http.stream("GET", "/api/view", params=params) as response:
                if response.status_code == 404:
                    raise ViewNotFound(
                        f"ComfyUI has no {type_} file {subfolder}/{filename}".replace("//", "/")
                    )
                response.raise_for_status()
                yield response

    async def upload_input(self, path: Path, name: str, subfolder: str, content_type: str) -> dict[str, Any]:
        """Put a file into ComfyUI's input directory (`/upload/image` takes any file), overwriting:
        names are content-addressed, so an existing file has these very bytes."""
        data = {"type": "input", "subfolder": subfolder, "overwrite": "true"}
        with _map_errors("POST /upload/image"), path.open("rb") as file:
            files = {"image": (name, file, content_type)}
            response = await self._http.post("/api/upload/image", data=data, files=files)
            response.raise_for_status()
            return response.json()

    # -- capabilities ------------------------------------------------------------------------------

    async def object_info(self) -> dict[str, Any]:
        return await self._get_json("/api/object_info")

    async def system_stats(self) -> dict[str, Any]:
        return await self._get_json("/api/system_stats")

    async def features(self) -> dict[str, Any]:
        """Server feature flags (0.3.45+); {} on older servers."""
        with _map_errors("GET /features"):
            response = await self._http.get("/api/features")
            if response.status_code == 404:
                return {}
            response.raise_for_status()
            return response.json()

    async def alive(self) -> bool:
        try:
            with _map_errors("GET /prompt"):
                (await self._http.get("/api/prompt", timeout=3.0)).raise_for_status()
        except ComfyUIError:
            return False
        return True

    async def _get_json(self, path: str) -> dict[str, Any]:
        with _map_errors(f"GET {path}"):
            response = await self._http.get(path)
            response.raise_for_status()
            return response.json()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _ids(items: Any) -> list[str]:
    # Queue items are [number, prompt_id, prompt, extra_data, outputs_to_execute].
    return [item[1] for item in items or () if isinstance(item, list) and len(item) > 1]
