"""Model folders (`/models`, `/experiment/models`): what the workers offer, as far as a gateway can know.

Workers do not report their model directories, but their loader nodes list the files in their combos
(`CheckpointLoaderSimple.ckpt_name` lists `checkpoints`, ...). Those lists are the honest answer; folders
no loader reveals are listed empty. Folder keys are ComfyUI 0.33.0's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ingest.catalogue.personalize import combo_options

FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "latent_upscale_models", "custom_nodes", "datasets", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders", "background_removal", "frame_interpolation", "geometry_estimation",
    "optical_flow", "detection",
)  # fmt: skip
# ComfyUI's `supported_pt_extensions`, sorted as `/experiment/models` lists them.
EXTENSIONS = [".bin", ".ckpt", ".pkl", ".pt", ".pt2", ".pth", ".safetensors", ".sft"]

# folder -> (class_type, input) of the core loaders that list its files.
_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "checkpoints": (("CheckpointLoaderSimple", "ckpt_name"),),
    "loras": (("LoraLoader", "lora_name"),),
    "vae": (("VAELoader", "vae_name"),),
    "text_encoders": (("CLIPLoader", "clip_name"),),
    "diffusion_models": (("UNETLoader", "unet_name"),),
    "clip_vision": (("CLIPVisionLoader", "clip_name"),),
    "style_models": (("StyleModelLoader", "style_model_name"),),
    "controlnet": (("ControlNetLoader", "control_net_name"),),
    "gligen": (("GLIGENLoader", "gligen_name"),),
    "upscale_models": (("UpscaleModelLoader", "model_name"),),
    "latent_upscale_models": (("LatentUpscaleModelLoader", "model_name"),),
    "hypernetworks": (("HypernetworkLoader", "hypernetwork_name"),),
    "photomaker": (("PhotoMakerLoader", "photomaker_model_name"),),
    "model_patches": (("ModelPatchLoader", "name"),),
    "audio_encoders": (("AudioEncoderLoader", "audio_encoder_name"),),
}
# `/experiment/models` leaves these out, as ComfyUI does.
_NOT_MODELS = frozenset({"configs", "custom_nodes"})


def model_files(object_info: Mapping[str, Any], folder: str) -> list[str]:
    """Files of `folder` that the catalogue's loaders list (virtual entries like `pixel_space` dropped)."""
    names: set[str] = set()
    for class_type, input_name in _SOURCES.get(folder, ()):
        node = object_info.get(class_type)
        inputs = node.get("input", {}) if isinstance(node, dict) else {}
        for section in ("required", "optional"):
            options = combo_options((inputs.get(section) or {}).get(input_name))
            names.update(o for o in options or () if isinstance(o, str) and "." in o.rsplit("/", 1)[-1])
    return sorted(names)


def experiment_folders() -> list[dict[str, Any]]:
    return [{"name": f, "folders": [], "extensions": EXTENSIONS} for f in FOLDERS if f not in _NOT_MODELS]
