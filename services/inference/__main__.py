"""`python -m services.inference [--comfyui-dir DIR] [--comfyui-url URL] [--port N]`: run one inference
instance. Settings come from the environment (see config.py); these flags override it.
`--comfyui-dir` makes the instance start and supervise ComfyUI's main.py from that directory
(same as INFERENCE_COMFYUI_DIR); `comfy-cloud serve inference` reads the environment only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

from comfy_cloud.config import load_settings
from comfy_cloud.logging import configure_logging
from services.inference.app import create_app
from services.inference.config import InferenceSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.inference", description="Run one inference instance beside one ComfyUI."
    )
    parser.add_argument("--comfyui-dir", type=Path, help="start and supervise ComfyUI's main.py from here")
    parser.add_argument("--comfyui-args", help="extra flags for the supervised ComfyUI, e.g. '--cpu'")
    parser.add_argument("--comfyui-url", help="the ComfyUI server (default COMFYUI_URL)")
    parser.add_argument("--port", type=int, help="port of this service (default PORT or 8082)")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "comfyui_dir": args.comfyui_dir,
            "comfyui_args": args.comfyui_args,
            "comfyui_url": args.comfyui_url,
            "port": args.port,
        }.items()
        if value is not None
    }
    settings = load_settings(InferenceSettings, **overrides)
    configure_logging("comfy-cloud-inference", settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
