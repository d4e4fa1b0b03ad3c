"""`python -m services.dispatcher`: run the dispatcher from environment settings."""

from __future__ import annotations

import uvicorn

from comfy_cloud.config import load_settings
from comfy_cloud.logging import configure_logging
from services.dispatcher.app import create_app
from services.dispatcher.config import DispatcherSettings


def main() -> None:
    settings = load_settings(DispatcherSettings)
    configure_logging("dispatcher", settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
