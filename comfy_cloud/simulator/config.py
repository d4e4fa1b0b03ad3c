"""Simulator settings and the behaviour that differs between the two imitated ComfyUI versions.

The version switch follows the protocol reference §8.1: error style, the jobs API (absent on 0.3.64),
feature flags, `/system_stats`, `extra_data.create_time` and the `Sec-Fetch-Site` check (0.19.0+).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_VERSIONS = ("0.33.0", "0.3.64")
MAX_UPLOAD_SIZE = 104857600  # ComfyUI's default --max-upload-size (100 MB), advertised as a feature flag


@dataclass
class SimulatorConfig:
    """How one simulated ComfyUI behaves. Fields may be changed at run time through `/_sim/config`."""

    version: str = "0.33.0"
    # Holds input/, output/, temp/ and user/ like ComfyUI's --base-directory.
    base_dir: Path = field(default_factory=lambda: Path(".comfy-cloud/simulator"))
    # Extra seconds every executed node takes (0 = as fast as possible).
    node_delay: float = 0.0
    # Per-class delays that replace node_delay, e.g. {"ImageBlur": 0.5}.
    class_delays: dict[str, float] = field(default_factory=dict)
    # A full /object_info dump to serve (e.g. the 0.33.0 fixture) so a UI sees every node.
    object_info_path: Path | None = None
    # Edge in pixels of ProbePreview's red JPEG preview (32 as recorded).
    preview_size: int = 32
    # Images with more pixels than this are processed in a worker thread instead of the event loop.
    thread_threshold_pixels: int = 1_000_000

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported ComfyUI version {self.version!r}; use one of {SUPPORTED_VERSIONS}")
        self.base_dir = Path(self.base_dir)
        if self.object_info_path is not None:
            self.object_info_path = Path(self.object_info_path)

    @property
    def is_legacy(self) -> bool:
        """True when imitating 0.3.64 (no jobs API, old error shapes, no create_time)."""
        return self.version == "0.3.64"

    @property
    def error_style(self) -> str:
        """The `style` argument of comfy_cloud.comfyui.validation."""
        return "0.3" if self.is_legacy else "0.33"

    def delay_for(self, class_type: str) -> float:
        return self.class_delays.get(class_type, self.node_delay)

    def dir(self, kind: str) -> Path:
        return self.base_dir / kind


def feature_flags(config: SimulatorConfig) -> dict[str, Any]:
    """The server flags sent over WS and by `GET /features` (§3.10)."""
    if config.is_legacy:
        return {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
    return {
        "supports_preview_metadata": True,
        "supports_model_type_tags": True,
        "max_upload_size": MAX_UPLOAD_SIZE,
        "extension": {"manager": {"supports_v4": True}},
        "node_replacements": True,
        "assets": False,
    }


def system_stats(config: SimulatorConfig, argv: list[str]) -> dict[str, Any]:
    """`GET /system_stats` shaped like the recordings; the device is a fake CPU with fixed memory."""
    ram_total, ram_free = 17179869184, 12884901888
    legacy = config.is_legacy
    system: dict[str, Any] = {
        "os": "posix" if legacy else "linux",
        "ram_total": ram_total,
        "ram_free": ram_free,
        "comfyui_version": config.version,
        "required_frontend_version": "1.27.10" if legacy else "1.49.6",
        "installed_templates_version": "0.1.95" if legacy else "0.11.44",
        "required_templates_version": "0.1.95" if legacy else "0.11.44",
    }
    if not legacy:
        system["comfy_package_versions"] = [
            {"name": name, "installed": ver, "required": ver}
            for name, ver in (
                ("comfyui-frontend-package", "1.49.6"),
                ("comfyui-workflow-templates", "0.11.44"),
                ("comfyui-embedded-docs", "0.5.10"),
                ("comfy-kitchen", "0.2.31"),
                ("comfy-aimdo", "0.4.13"),
            )
        ]
    system["python_version"] = sys.version
    # A simulator has no torch; the suffix says so to anyone reading the stats.
    system["pytorch_version"] = f"0.0.0+simulator ({platform.python_implementation()})"
    system["embedded_python"] = False
    if not legacy:
        system["deploy_environment"] = "simulator"
    system["argv"] = argv
    device = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": ram_total,
        "vram_free": ram_free,
        "torch_vram_total": ram_total,
        "torch_vram_free": ram_free,
    }
    return {"system": system, "devices": [device]}


# `GET /models` folder keys (§2.4): 27 on 0.33.0, 20 on 0.3.64.
MODEL_FOLDERS_0_33 = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "latent_upscale_models", "custom_nodes", "datasets", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders", "background_removal", "frame_interpolation", "geometry_estimation",
    "optical_flow", "detection",
]  # fmt: skip
MODEL_FOLDERS_0_3_64 = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
]  # fmt: skip


def model_folders(config: SimulatorConfig) -> list[str]:
    return list(MODEL_FOLDERS_0_3_64 if config.is_legacy else MODEL_FOLDERS_0_33)
