"""Server facts: feature flags (`/features`, also the WebSocket `feature_flags` reply) and `/system_stats`.

`/system_stats` reports the fleet: the system section of the instance heard from most recently (its argv
removed: worker paths are nobody's business) and the devices of every live instance. With no instance
live, an honest cloud answer: this gateway's Python, no devices, no ComfyUI version.
"""

from __future__ import annotations

import copy
import sys
from functools import cache
from importlib import metadata
from typing import Any

from services.ingest.files.limits import MAX_UPLOAD_BYTES

# Comfy Cloud's default for an account without its own limit (the dispatcher enforces the real one).
DEFAULT_MAX_CONCURRENT_JOBS = 1


@cache
def frontend_version() -> str | None:
    try:
        return metadata.version("comfyui-frontend-package")
    except metadata.PackageNotFoundError:
        return None


def server_features(*, max_upload_size: int, max_concurrent_jobs: int) -> dict[str, Any]:
    """The server's feature flags. No `node_replacements` (we have none to offer, so the frontend need
    not ask) and no assets API (the frontend then uses the classic model routes)."""
    return {
        "supports_preview_metadata": True,
        "max_upload_size": min(max_upload_size, MAX_UPLOAD_BYTES),
        "max_concurrent_jobs": max_concurrent_jobs,
        "node_replacements": False,
        "assets": False,
    }


def system_stats(reported: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the instances' `/system_stats` (most recent first) into one answer for the fleet."""
    valid = [r for r in reported if isinstance(r.get("system"), dict)]
    if not valid:
        return _without_instances()
    system = copy.deepcopy(valid[0]["system"])
    system["argv"] = []
    if frontend_version():
        system["comfyui_frontend_version"] = frontend_version()
    devices = [d for r in valid for d in r.get("devices") or [] if isinstance(d, dict)]
    return {"system": system, "devices": devices}


def _without_instances() -> dict[str, Any]:
    version = frontend_version()
    return {
        "system": {
            "os": sys.platform,
            "ram_total": 0,
            "ram_free": 0,
            "comfyui_version": "",
            "required_frontend_version": version or "",
            "comfyui_frontend_version": version or "",
            "python_version": sys.version,
            "pytorch_version": "",
            "embedded_python": False,
            "deploy_environment": "comfy-cloud",
            "argv": [],
        },
        "devices": [],
    }
