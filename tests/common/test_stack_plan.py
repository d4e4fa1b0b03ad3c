"""`comfy-cloud up`'s process plan: supervised ComfyUIs get directories of their own."""

from __future__ import annotations

import shlex
from pathlib import Path

from comfy_cloud.stack import StackOptions, plan


def _inference_envs(options: StackOptions) -> list[dict[str, str]]:
    return [c.env for c in plan(options, "postgresql://u@h/db") if c.name.startswith("inference-")]


def test_each_supervised_comfyui_gets_its_own_directories(tmp_path: Path) -> None:
    options = StackOptions(
        data_dir=tmp_path,
        comfyui_urls=["http://127.0.0.1:8188", "http://127.0.0.1:8189"],
        comfyui_dir=Path("/opt/ComfyUI"),
        comfyui_args="--cpu",
    )
    envs = _inference_envs(options)
    assert [e["INFERENCE_COMFYUI_DIR"] for e in envs] == ["/opt/ComfyUI", "/opt/ComfyUI"]
    outputs = []
    for env in envs:
        args = shlex.split(env["INFERENCE_COMFYUI_ARGS"])
        assert args[-1] == "--cpu"
        for kind in ("input", "output", "temp", "user"):
            assert f"--{kind}-directory" in args
        outputs.append(args[args.index("--output-directory") + 1])
    assert len(set(outputs)) == 2  # two ComfyUIs never write into one output directory
    assert all(o.startswith(str(tmp_path)) for o in outputs)


def test_without_a_comfyui_dir_or_with_the_simulator_nothing_is_supervised(tmp_path: Path) -> None:
    assert all("INFERENCE_COMFYUI_DIR" not in e for e in _inference_envs(StackOptions(data_dir=tmp_path)))
    simulated = StackOptions(data_dir=tmp_path, simulate=True, comfyui_dir=Path("/opt/ComfyUI"))
    assert all("INFERENCE_COMFYUI_DIR" not in e for e in _inference_envs(simulated))
