"""Files: uploads (`/upload/image`, `/upload/mask`) and `/view`, per user (issue #3)."""

from services.ingest.files.endpoints import router

__all__ = ["router"]
