"""Per-user state: `/users`, `/api/user`, `/settings`, `/userdata`, `/v2/userdata` (in `user_data`)."""

from services.ingest.userdata.endpoints import router

__all__ = ["router"]
