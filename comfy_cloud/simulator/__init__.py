"""A small, fast, protocol-faithful ComfyUI server: the test double of ComfyUI, a benchmark target and
the engine of `comfy-cloud up --sim`. It is NOT ComfyUI: it runs a handful of image nodes with
numpy/Pillow and imitates ComfyUI 0.33.0 (default) or 0.3.64 on the wire, quirks included.

Start it:
    async with serve_simulator(SimulatorConfig(base_dir=tmp)) as url: ...   # same event loop
    with SimulatorThread(SimulatorConfig(base_dir=tmp)) as url: ...         # own loop, own thread
    python -m comfy_cloud.simulator --port 8188 --base-dir DIR [--version 0.3.64] [--node-delay S]

Executable nodes: EmptyImage, ImageInvert, ImageScale, ImageScaleBy, ImageBlur, ImageCompositeMasked,
SolidMask, LoadImage, LoadImageMask, SaveImage, PreviewImage, GetImageSize, PreviewAny,
SaveImageWebsocket and the test-only ProbePreview, ProbeSleep and ProbeFail (tests/fixtures/comfyui/
README.md). With `object_info_path` the whole catalogue is served; other nodes fail when executed.

Not imitated: output caching (every run executes every node; `execution_cached` is always empty),
progress throttling, subgraph/expansion node ids, users/settings/userdata, assets, the frontend.

Failure injection and introspection (not part of ComfyUI; no /api twin):
    POST /_sim/restart       {"down_seconds": 0.5}  behave like a ComfyUI restart: the running prompt,
                             the queue and history are lost, every socket drops, the listener closes
                             (connections refused) for down_seconds, then the same port serves again.
                             Without SimulatorServer (a bare aiohttp app) requests get 503 while down.
    POST /_sim/drop_sockets  cut every WebSocket at the TCP level (no close frame); execution goes on.
    POST /_sim/config        {"node_delay": s, "class_delays": {"ImageBlur": s}, "preview_size": px}
    GET  /_sim/stats         queue, sockets, counters and current delays.
"""

from comfy_cloud.simulator.app import create_app
from comfy_cloud.simulator.config import SimulatorConfig
from comfy_cloud.simulator.server import SimulatorServer, SimulatorThread, run_simulator, serve_simulator

__all__ = [
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorThread",
    "create_app",
    "run_simulator",
    "serve_simulator",
]
