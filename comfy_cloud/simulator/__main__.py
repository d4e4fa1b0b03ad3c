"""`python -m comfy_cloud.simulator`: serve a ComfyUI simulator (not ComfyUI) until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comfy_cloud.simulator.config import SUPPORTED_VERSIONS, SimulatorConfig
from comfy_cloud.simulator.server import SimulatorServer, run_simulator

BANNER = """\
==============================================================================
  COMFYUI SIMULATOR - this is NOT ComfyUI.
  A protocol-faithful test double (comfy_cloud.simulator) imitating ComfyUI {version}.
  Only a few image nodes really run; everything else fails when executed.
  Listening on http://{host}:{port}   (WebSocket: ws://{host}:{port}/ws)
  Files under {base}
  Failure injection: POST /_sim/restart, /_sim/drop_sockets, /_sim/config; GET /_sim/stats
==============================================================================
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m comfy_cloud.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base-dir", type=Path, default=Path(".comfy-cloud/simulator"))
    parser.add_argument("--node-delay", type=float, default=0.0, help="seconds each executed node takes")
    parser.add_argument("--version", choices=SUPPORTED_VERSIONS, default="0.33.0")
    parser.add_argument("--object-info", type=Path, default=None, help="serve this full /object_info dump")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(raw)
    config = SimulatorConfig(
        version=args.version,
        base_dir=args.base_dir,
        node_delay=args.node_delay,
        object_info_path=args.object_info,
    )

    def announce(server: SimulatorServer) -> None:
        base = config.base_dir.resolve()
        sys.stdout.write(BANNER.format(version=args.version, host=args.host, port=server.port, base=base))
        sys.stdout.flush()

    run_simulator(
        config,
        args.host,
        args.port,
        on_started=announce,
        argv=["main.py", *raw],
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
