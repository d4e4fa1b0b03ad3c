"""Settings of the inference service (environment variables; see README "Configuration").

The variables `comfy-cloud up` sets are unprefixed (HOST, PORT, COMFYUI_URL, DISPATCHER_URL,
INSTANCE_ID, ADVERTISE_URL); tuning knobs are INFERENCE_*. Every duration is in seconds.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from comfy_cloud.config import CommonSettings


def _env(name: str, default: Any, description: str, **constraints: Any) -> Any:
    """A field read from INFERENCE_<NAME> (or the field name itself, for tests and kwargs)."""
    return Field(
        default=default,
        description=description,
        validation_alias=AliasChoices(f"inference_{name}", name),
        **constraints,
    )


class InferenceSettings(CommonSettings):
    model_config = SettingsConfigDict(
        extra="ignore", env_prefix="", case_sensitive=False, populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = 8082
    comfyui_url: str = Field(default="http://127.0.0.1:8188", description="the ComfyUI server beside us")
    dispatcher_url: str | None = Field(
        default="http://127.0.0.1:8081", description="dispatcher base URL (unset: run without one)"
    )
    # Stable across restarts when set, so a restarted instance re-registers as itself. A name that is
    # not a UUID (e.g. a StatefulSet pod name) is turned into one deterministically.
    instance_id: uuid.UUID = Field(default_factory=uuid.uuid4)

    @field_validator("instance_id", mode="before")
    @classmethod
    def _instance_id_from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                return uuid.uuid5(uuid.NAMESPACE_URL, f"comfy-cloud:inference:{value}")
        return value

    advertise_url: str | None = Field(
        default=None, description="URL the dispatcher uses to reach this service (default http://HOST:PORT)"
    )

    capacity: int = _env("capacity", 1, "jobs handed to ComfyUI at once (it runs one at a time)", ge=1)
    comfyui_dir: Path | None = _env("comfyui_dir", None, "start and supervise ComfyUI's main.py from here")
    comfyui_python: str | None = _env("comfyui_python", None, "interpreter for main.py (default: ours)")
    comfyui_args: str = _env("comfyui_args", "", "extra command-line flags for the supervised ComfyUI")

    # The WebSocket to ComfyUI: a ping unanswered for ws_ping_timeout means the socket is dead.
    ws_ping_interval: float = _env("ws_ping_interval", 10.0, "seconds between pings", gt=0)
    ws_ping_timeout: float = _env("ws_ping_timeout", 10.0, "seconds a pong may take", gt=0)
    # A running job that hears nothing for this long has its state read over HTTP.
    silence_timeout: float = _env("silence_timeout", 30.0, "seconds without events before a check", gt=0)
    # While the socket is down, running jobs are checked over HTTP this often.
    poll_interval: float = _env("poll_interval", 2.0, "seconds between HTTP checks", gt=0)
    # ComfyUI unreachable this long while a job runs: the job is given back (or failed).
    comfyui_lost_timeout: float = _env("comfyui_lost_timeout", 120.0, "seconds", gt=0)
    # After an interrupt, how long to wait for ComfyUI to confirm before ending the job anyway.
    interrupt_grace: float = _env("interrupt_grace", 60.0, "seconds", gt=0)
    # How long the closing `executing {node: null}` and the history entry may lag the end event.
    close_wait: float = _env("close_wait", 5.0, "seconds", gt=0)

    upload_attempts: int = _env("upload_attempts", 5, "tries per output file", ge=1)
    upload_backoff: float = _env("upload_backoff", 0.5, "first retry delay, doubled each time", ge=0)
    upload_concurrency: int = _env("upload_concurrency", 4, "output files stored at once", ge=1)
    http_timeout: float = _env("http_timeout", 30.0, "seconds per ComfyUI HTTP call", gt=0)
    # Heartbeat period until the dispatcher answers registration with its own.
    heartbeat_interval: float = _env("heartbeat_interval", 5.0, "seconds", gt=0)

    @model_validator(mode="after")
    def _defaults(self) -> InferenceSettings:
        self.comfyui_url = self.comfyui_url.rstrip("/")
        if self.dispatcher_url:
            self.dispatcher_url = self.dispatcher_url.rstrip("/")
        if not self.advertise_url:
            self.advertise_url = f"http://{self.host}:{self.port}"
        return self
