"""Local server: ``python -m functions.serve [--host H] [--port P] [--workers N]``.

Runs the very app that Azure Functions hosts (``functions.http_api:app``) under uvicorn. The
app's lifespan loads and warms the model before uvicorn opens its socket, so by the time
"Uvicorn running on ..." is logged the first request is as fast as any. Defaults come from the
settings (EMNIST_EDGE_HOST / _PORT / _WORKERS); each worker process loads its own model.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

from shared.config import Settings

APP = "functions.http_api:app"

log = logging.getLogger("emnist_edge.serve")


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m functions.serve", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=settings.port, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=settings.workers,
                        help="processes, each with its own model (default: %(default)s)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="log every request (default: on)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    cores = os.cpu_count() or 1
    if args.workers * settings.torch_threads > cores:
        log.warning(
            "%d workers x %d torch threads > %d cores: they will fight over the cores "
            "(set EMNIST_EDGE_TORCH_THREADS=1)", args.workers, settings.torch_threads, cores,
        )
    url = base_url(args.host, args.port)
    log.info("loading the model, then serving the page at %s/ and the API docs at %s/api/docs",
             url, url)
    config = uvicorn.Config(APP, host=args.host, port=args.port, workers=args.workers,
                            access_log=args.access_log, log_level="info")
    if config.workers == 1:
        uvicorn.Server(config).run()
        return 0
    # Several workers share a socket that uvicorn binds with proto 0, so asyncio never turns on
    # TCP_NODELAY for their connections (uvicorn issue 3149) and every keep-alive response waits
    # ~40 ms for a delayed ACK. Linux copies the option from the listener to each connection.
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[listener]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
