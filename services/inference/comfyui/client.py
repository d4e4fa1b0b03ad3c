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

import aiohttp
from multidict import CIMultiDictProxy

from comfy_cloud.clients.http import Answer, LazySession, client_timeout, fetch
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


class ViewStream:
    """A `/view` answer being received: its headers, and its body chunk by chunk as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.headers: CIMultiDictProxy[str] = response.headers
        self._response = response

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


@contextlib.contextmanager
def _map_errors(what: str) -> Iterator[None]:
    """Translate aiohttp failures once, here: a transport problem means ComfyUI is unavailable."""
    try:
        yield
    except aiohttp.ClientError as exc:
        raise ComfyUIUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def _expect_success(status: int, what: str) -> None:
    if not 200 <= status < 300:
        error = ComfyUIUnavailable if status >= 500 else ComfyUIError
        raise error(f"{what}: ComfyUI answered {status}")


class ComfyUIClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = LazySession(
            timeout=client_timeout(connect=min(timeout, 5.0), read=timeout, pool=timeout),
            headers={"User-Agent": "comfy-cloud-inference"},
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
        answer = await self._call("POST", "/api/prompt", "POST /prompt", json=body)
        if answer.status == 400:
            refusal = _json_or_none(answer) or {}
            error = refusal.get("error")
            if not isinstance(error, dict):
                error = {"type": "invalid_prompt", "message": str(error or "prompt rejected")}
            raise PromptRejected(error, refusal.get("node_errors") or {})
        queued = _json(answer, "POST /prompt")
        if queued.get("prompt_id") != prompt_id:
            # ComfyUI before 0.3.45 ignores a client's prompt_id: its events would never be ours.
            await self.cancel(str(queued.get("prompt_id")))
            raise PromptIdIgnored(f"ComfyUI queued the prompt as {queued.get('prompt_id')}, not {prompt_id}")
        if queued.get("node_errors"):
            log.warning("ComfyUI dropped outputs that failed validation: %s", sorted(queued["node_errors"]))
        return queued

    async def cancel(self, prompt_id: str) -> None:
        """Stop the prompt whether pending or running: per-job cancel (0.26+), else dequeue it and
        interrupt it by id (0.3.57+; older servers interrupt whatever runs, which is ours anyway)."""
        if self.has_job_cancel is not False:
            what = "POST /api/jobs/{id}/cancel"
            answer = await self._call("POST", f"/api/jobs/{prompt_id}/cancel", what)
            if answer.status in (404, 405):
                self.has_job_cancel = False
            else:
                _expect_success(answer.status, what)
                self.has_job_cancel = True
                return
        answer = await self._call("POST", "/api/queue", "POST /queue delete", json={"delete": [prompt_id]})
        _expect_success(answer.status, "POST /queue delete")
        answer = await self._call("POST", "/api/interrupt", "POST /interrupt", json={"prompt_id": prompt_id})
        _expect_success(answer.status, "POST /interrupt")

    # -- state of a prompt -------------------------------------------------------------------------

    async def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry, or None while the prompt has not finished (or was forgotten)."""
        entry = (await self._get_json(f"/api/history/{prompt_id}", "GET /history/{id}")).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def job(self, prompt_id: str) -> dict[str, Any] | None:
        """`GET /api/jobs/{id}` (0.6.0+): the job, or None if unknown. Sets has_jobs_api; callers
        check it first and use queue/history on servers without the jobs API."""
        what = "GET /api/jobs/{id}"
        answer = await self._call("GET", f"/api/jobs/{prompt_id}", what)
        if answer.status == 404:
            # ComfyUI's "Job not found" is JSON; a missing route is aiohttp's plain text.
            self.has_jobs_api = isinstance(_json_or_none(answer), dict)
            return None
        job = _json(answer, what)
        self.has_jobs_api = True
        return job

    async def queue(self) -> QueueSnapshot:
        body = await self._get_json("/api/queue", "GET /queue")
        return QueueSnapshot(
            running=frozenset(_ids(body.get("queue_running"))),
            pending=frozenset(_ids(body.get("queue_pending"))),
        )

    # -- files -------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def view(self, filename: str, subfolder: str, type_: str) -> AsyncIterator[ViewStream]:
        """Stream one file from `/view`; iterate `stream.aiter_bytes()` inside the block."""
        params = {"filename": filename, "subfolder": subfolder, "type": type_}
        url = f"{self.base_url}/api/view"
        with _map_errors("GET /view"):
            async with self._http.get().get(url, params=params, allow_redirects=False) as response:
                if response.status == 404:
                    raise ViewNotFound(
                        f"ComfyUI has no {type_} file {subfolder}/{filename}".replace("//", "/")
                    )
                _expect_success(response.status, "GET /view")
                yield ViewStream(response)

    async def upload_input(self, path: Path, name: str, subfolder: str, content_type: str) -> dict[str, Any]:
        """Put a file into ComfyUI's input directory (`/upload/image` takes any file), overwriting:
        names are content-addressed, so an existing file has these very bytes."""
        with path.open("rb") as file:
            form = aiohttp.FormData({"type": "input", "subfolder": subfolder, "overwrite": "true"})
            form.add_field("image", file, filename=name, content_type=content_type)
            answer = await self._call("POST", "/api/upload/image", "POST /upload/image", data=form)
        return _json(answer, "POST /upload/image")

    # -- capabilities ------------------------------------------------------------------------------

    async def object_info(self) -> dict[str, Any]:
        return await self._get_json("/api/object_info")

    async def system_stats(self) -> dict[str, Any]:
        return await self._get_json("/api/system_stats")

    async def features(self) -> dict[str, Any]:
        """Server feature flags (0.3.45+); {} on older servers."""
        answer = await self._call("GET", "/api/features", "GET /features")
        if answer.status == 404:
            return {}
        return _json(answer, "GET /features")

    async def alive(self) -> bool:
        quick = client_timeout(connect=3.0, read=3.0, pool=3.0)
        try:
            answer = await self._call("GET", "/api/prompt", "GET /prompt", timeout=quick)
            _expect_success(answer.status, "GET /prompt")
        except ComfyUIError:
            return False
        return True

    async def _get_json(self, path: str, what: str | None = None) -> dict[str, Any]:
        what = what or f"GET {path}"
        return _json(await self._call("GET", path, what), what)

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Answer:
        """The whole answer, whatever its status; transport failures raise ComfyUIUnavailable."""
        with _map_errors(what):
            return await fetch(self._http.get(), method, f"{self.base_url}{path}", **kwargs)


def _json(answer: Answer, what: str) -> Any:
    """The body of a successful answer (ComfyUIError/ComfyUIUnavailable for any other status)."""
    _expect_success(answer.status, what)
    return answer.json()


def _json_or_none(answer: Answer) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _ids(items: Any) -> list[str]:
    # Queue items are [number, prompt_id, prompt, extra_data, outputs_to_execute].
    return [item[1] for item in items or () if isinstance(item, list) and len(item) > 1]
