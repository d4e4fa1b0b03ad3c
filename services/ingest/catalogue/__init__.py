"""The node catalogue (`/object_info`, per-user file combos) and the server's self-description
(`/features`, `/system_stats`, model folders, frontend-support and internal routes)."""

from services.ingest.catalogue.endpoints import router

__all__ = ["router"]
