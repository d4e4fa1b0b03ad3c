"""Settings of the ingest service (environment variables; see README "Configuration")."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from comfy_cloud.config import CommonSettings

MB = 1024 * 1024


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class IngestSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    dispatcher_url: str = Field(default="http://127.0.0.1:8081", description="dispatcher base URL (cancels)")
    firebase_project_id: str | None = Field(
        default=None, description="accept Firebase ID tokens of this project (unset: API keys only)"
    )
    # Local development: requests without credentials act as one local user.
    ingest_dev_mode: bool = False
    ingest_dev_mode_force: bool = Field(default=False, description="allow dev mode on a non-loopback host")
    ingest_dev_user: str = Field(default="local", min_length=1, description="name of the dev-mode user")
    api_key_cache_ttl: float = Field(default=30.0, ge=0, description="seconds an API-key lookup is reused")
    # Whole requests (uploads included); ComfyUI's default --max-upload-size is 100 MB.
    max_upload_size: int = Field(default=100 * MB, gt=0)
    # JSON bodies of the API routes (prompts carry the UI workflow, usually well under 1 MB).
    max_json_body: int = Field(default=16 * MB, gt=0)
    # WebSocket back-pressure: frames queued per socket, and how long one send may block.
    ws_send_queue: int = Field(default=256, ge=8)
    ws_send_timeout: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _dev_mode_on_loopback(self) -> IngestSettings:
        if self.ingest_dev_mode and not self.ingest_dev_mode_force and not is_loopback_host(self.host):
            raise ValueError(
                f"INGEST_DEV_MODE serves every request without credentials as one user; refusing it on "
                f"the non-loopback host {self.host!r} (set INGEST_DEV_MODE_FORCE=1 to insist)"
            )
        return self
