"""Local server: ``python -m local.serve [--host H] [--port P] [--workers N] [--batch]``.

Runs the very app that Azure Functions hosts (``functions.http_api.create_app``) under uvicorn,
each worker process building its own (``local.app.create``). The
app's lifespan loads and warms the model before uvicorn opens its socket, so by the time
"Uvicorn running on ..." is logged the first request is as fast as any. Defaults come from the
settings (EMNIST_EDGE_HOST / _PORT / _WORKERS); each worker process loads its own model.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import Multiprocess

from shared.config import PREFIX, Settings, usable_cores

if TYPE_CHECKING:
    from local.azurite import LocalBatchStack

APP = "local.app:create"

log = logging.getLogger("emnist_edge.serve")


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    # The local server serves /metrics unless told not to: its workers read this at start.
    os.environ.setdefault(PREFIX + "METRICS", "1")
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m local.serve", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=settings.port, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=settings.workers,
                        help="processes, each with its own model (default: %(default)s)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction,
                        default=settings.access_log,
                        help="log every request (default: EMNIST_EDGE_ACCESS_LOG, off)")
    parser.add_argument("--batch", action=argparse.BooleanOptionalAction, default=False,
                        help="also start Azurite and the poller that processes each blob "
                        "uploaded to the batches container, as the blob trigger does in Azure "
                        "(default: off; make run turns it on)")
    parser.add_argument("--batch-port", type=int, default=10000,
                        help="Azurite's blob port (default 10000, where UseDevelopmentStorage=true "
                        "looks; 0 picks a free one)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    cores = usable_cores()
    if args.workers * settings.torch_threads > cores:
        log.warning(
            "%d workers x %d torch threads > %d cores: they will fight over the cores "
            "(set EMNIST_EDGE_TORCH_THREADS=1)", args.workers, settings.torch_threads, cores,
        )
    url = base_url(args.host, args.port)
    log.info("loading the model, then serving the page at %s/ and the API docs at %s/api/docs",
             url, url)
    if settings.metrics:
        log.info("metrics in Prometheus text format at %s/metrics (EMNIST_EDGE_METRICS=0 turns "
                 "them off)", url)
    config = uvicorn.Config(APP, factory=True, host=args.host, port=args.port,
                            workers=args.workers, access_log=args.access_log, log_level="info")
    stack = start_batch_side(settings, args.batch_port) if args.batch else None
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: with the default
    # handler that ends the process on the spot, before Azurite is stopped below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(config)
    finally:
        if stack is not None:
            stack.stop()
    return 0


def start_batch_side(settings: Settings, port: int) -> LocalBatchStack:
    """Azurite and the poller: the local stand-in for Storage, Event Grid and the blob trigger.
    Imported here: the poller brings torch, which a process that only supervises uvicorn's
    workers would otherwise load for nothing (~250 MiB, ~0.8 s of every start)."""
    from functions.storage import quiet_sdk_http_logging
    from local.azurite import start_local_batch_stack
    from shared.model_loader import ModelRegistry

    quiet_sdk_http_logging()
    stack = start_local_batch_stack(settings, ModelRegistry(), port=port)
    log.info("batches: upload blobs to container %r at %s (connection string: %s); results "
             "appear in %r; large batches fan out over queue %r at %s to %d worker processes",
             settings.batch_container, stack.azurite.blob_endpoint, stack.connection_string,
             settings.results_container, settings.shard_queue, stack.azurite.queue_endpoint,
             len(stack.workers))
    return stack


def serve(config: uvicorn.Config) -> None:
    if config.workers == 1:
        uvicorn.Server(config).run()
        return
    # Several workers share a socket that uvicorn binds with proto 0, so asyncio never turns on
    # TCP_NODELAY for their connections (uvicorn issue 3149) and every keep-alive response waits
    # ~40 ms for a delayed ACK. Linux copies the option from the listener to each connection.
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[listener]).run()


if __name__ == "__main__":
    sys.exit(main())
