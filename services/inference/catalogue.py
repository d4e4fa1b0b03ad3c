"""This ComfyUI's node catalogue (`/object_info`): registered with the dispatcher, and used to find
the file inputs of a prompt. Fetched once and again whenever ComfyUI may have changed (a restart)."""

from __future__ import annotations

import asyncio
from typing import Any

from database.repositories.fleet import catalogue_hash
from services.inference.comfyui.client import ComfyUIClient


class Catalogue:
    def __init__(self, comfy: ComfyUIClient) -> None:
        self._comfy = comfy
        self._object_info: dict[str, Any] | None = None
        self.hash: str | None = None
        self._lock = asyncio.Lock()

    async def object_info(self) -> dict[str, Any]:
        """The catalogue, fetched on first use; raises ComfyUIUnavailable while ComfyUI is down."""
        if self._object_info is None:
            await self.refresh()
        assert self._object_info is not None
        return self._object_info

    async def refresh(self) -> bool:
        """Fetch it again; True when it changed."""
        async with self._lock:
            object_info = await self._comfy.object_info()
            digest = catalogue_hash(object_info)
            changed = digest != self.hash
            self._object_info, self.hash = object_info, digest
            return changed

    def invalidate(self) -> None:
        self._object_info = None
