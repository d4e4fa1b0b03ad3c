"""The `comfy-cloud` command.

comfy-cloud up [--sim] [--comfyui-url URL ...]   the whole stack on one machine
comfy-cloud serve ingest|dispatcher|inference      one service (containers; configured by env)
comfy-cloud apikey create --user NAME              create a user if needed and print a new API key
comfy-cloud migrate                                apply database migrations (DATABASE_URL)
comfy-cloud sim                                    the ComfyUI simulator alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
from pathlib import Path

from comfy_cloud import embedded_postgres

SERVICES = ("ingest", "dispatcher", "inference")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfy-cloud", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(required=True, metavar="command")

    up = commands.add_parser("up", help="start the whole stack on this machine")
    up.add_argument("--data-dir", type=Path, default=embedded_postgres.default_data_dir())
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--ingest-port", type=int, default=8080)
    up.add_argument("--dispatcher-port", type=int, default=8081)
    up.add_argument("--inference-port", type=int, default=8082, help="first inference port")
    up.add_argument(
        "--comfyui-url",
        action="append",
        help="a ComfyUI server (repeatable: one inference instance each); default COMFYUI_URL "
        "or http://127.0.0.1:8188",
    )
    up.add_argument("--sim", action="store_true", help="run ComfyUI simulators instead of real ComfyUI")
    up.add_argument("--sim-workers", type=int, default=1, help="simulated ComfyUI servers (with --sim)")
    up.add_argument("--sim-port", type=int, default=8188, help="first simulator port (with --sim)")
    up.add_argument("--force-dev-mode", action="store_true", help="allow credential-less access off loopback")
    _comfyui_process_options(up)
    up.set_defaults(handler=_up)

    serve = commands.add_parser("serve", help="run one service, configured by environment variables")
    serve.add_argument("service", choices=SERVICES)
    _comfyui_process_options(serve, note=" (inference only; same as INFERENCE_COMFYUI_DIR/_ARGS)")
    serve.set_defaults(handler=_serve)

    apikey = commands.add_parser("apikey", help="manage API keys")
    apikey_commands = apikey.add_subparsers(required=True, metavar="action")
    create = apikey_commands.add_parser("create", help="create a user if needed and print a new API key")
    create.add_argument("--user", required=True)
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--data-dir", type=Path, default=embedded_postgres.default_data_dir())
    create.set_defaults(handler=_apikey_create)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--data-dir", type=Path, default=embedded_postgres.default_data_dir())
    migrate.set_defaults(handler=_migrate)

    sim = commands.add_parser(
        "sim", help="run the ComfyUI simulator (see python -m comfy_cloud.simulator -h)"
    )
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    sim.set_defaults(handler=_sim)
    return parser


def _comfyui_process_options(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument(
        "--comfyui-dir",
        type=Path,
        help="start and supervise ComfyUI's main.py from this directory, listening where the ComfyUI URL "
        "points; restarted when it dies" + note,
    )
    parser.add_argument(
        "--comfyui-args", default="", help='extra flags for the supervised ComfyUI, e.g. "--cpu"' + note
    )


def database_url_for(data_dir: Path) -> str:
    """DATABASE_URL if set, else the embedded server in the data directory (shared with a running
    `comfy-cloud up`: the server stops when the last process using it exits)."""
    return os.environ.get("DATABASE_URL") or embedded_postgres.start(data_dir / "postgres")


def _up(args: argparse.Namespace) -> None:
    from comfy_cloud.stack import StackOptions, run_stack

    if args.host not in {"127.0.0.1", "localhost", "::1"} and not args.force_dev_mode:
        print(
            f"note: --host {args.host} is not loopback, so requests need credentials "
            "(create a key with `comfy-cloud apikey create --user NAME`).",
            file=sys.stderr,
        )
    options = StackOptions(
        data_dir=args.data_dir.resolve(),
        host=args.host,
        ingest_port=args.ingest_port,
        dispatcher_port=args.dispatcher_port,
        inference_port=args.inference_port,
        comfyui_urls=args.comfyui_url or [os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188")],
        simulate=args.sim,
        sim_workers=args.sim_workers,
        sim_port=args.sim_port,
        force_dev_mode=args.force_dev_mode,
        comfyui_dir=args.comfyui_dir.resolve() if args.comfyui_dir else None,
        comfyui_args=args.comfyui_args,
    )
    if args.comfyui_dir and args.sim:
        sys.exit("--comfyui-dir and --sim exclude each other")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_stack(options))


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from comfy_cloud.config import load_settings
    from comfy_cloud.logging import configure_logging

    if args.service == "ingest":
        from services.ingest.app import create_app
        from services.ingest.config import IngestSettings as Settings
    elif args.service == "dispatcher":
        from services.dispatcher.app import create_app  # type: ignore[assignment]
        from services.dispatcher.config import DispatcherSettings as Settings  # type: ignore[assignment]
    else:
        from services.inference.app import create_app  # type: ignore[assignment]
        from services.inference.config import InferenceSettings as Settings  # type: ignore[assignment]

    if args.comfyui_dir or args.comfyui_args:
        if args.service != "inference":
            sys.exit("--comfyui-dir and --comfyui-args are options of `serve inference`")
        if args.comfyui_dir:
            os.environ["INFERENCE_COMFYUI_DIR"] = str(args.comfyui_dir.resolve())
        if args.comfyui_args:
            os.environ["INFERENCE_COMFYUI_ARGS"] = args.comfyui_args
    settings = load_settings(Settings)
    configure_logging(f"comfy-cloud-{args.service}", settings.log_level, settings.log_format)
    app = create_app(settings)  # type: ignore[arg-type]
    # Everything imported so far (FastAPI, SQLAlchemy, pydantic: ~140,000 objects) lives as long as
    # the process: take it out of the garbage collector's full passes, which would otherwise walk it
    # all (tens of ms, stalling every request) each time enough new objects have survived.
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
        # Decline permessage-deflate: the messages are small JSON and already-compressed previews, and
        # deflating each one cost ingest and every client CPU for no gain on a LAN or loopback.
        ws_per_message_deflate=False,
        # Only ingest faces clients through proxies (and reads their address); the dispatcher and the
        # inference instances are internal and never look at X-Forwarded-*: one ASGI layer less each.
        proxy_headers=args.service == "ingest",
    )


def _apikey_create(args: argparse.Namespace) -> None:
    from database.engine import Database
    from database.migrate import upgrade
    from database.repositories.users import UserRepository

    url = database_url_for(args.data_dir.resolve())
    upgrade(url)

    async def create() -> str:
        database = Database(url, application_name="comfy-cloud-cli", pool_size=1)
        try:
            async with database.session() as session:
                users = UserRepository(session)
                user = await users.get_or_create(args.user)
                created = await users.create_api_key(user.id, name=args.name)
                return created.key
        finally:
            await database.dispose()

    key = asyncio.run(create())
    print(f"created an API key for user {args.user!r} (shown once; send it as X-API-Key):")
    print(key)


def _migrate(args: argparse.Namespace) -> None:
    from database.migrate import upgrade

    upgrade(database_url_for(args.data_dir.resolve()))
    print("database is at the latest migration")


def _sim(args: argparse.Namespace) -> None:
    from comfy_cloud.simulator.__main__ import main as sim_main

    sim_main(args.sim_args)


if __name__ == "__main__":
    main()
