"""Settings from the environment, read in one place.

Every knob of the service is an environment variable (an app setting in Azure) with a default
that suits a 2-core machine; nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "model"
PREFIX = "EMNIST_EDGE_"


T = TypeVar("T")
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS keeps one (a
    container's CPU set, ``taskset``, a benchmark's ``--server-cpus``), else every core. One
    worker process per core is the default, and more than these would only take turns."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1


def _setting(name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
    """``PREFIX + name`` parsed, or ``default`` when unset or blank; a clear error otherwise."""
    raw = os.environ.get(PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except (KeyError, ValueError) as exc:
        raise ValueError(f"setting {PREFIX + name}={raw!r} is not {expected}") from exc


def _int(name: str, default: int) -> int:
    return _setting(name, default, int, "an integer")


def _float(name: str, default: float) -> float:
    return _setting(name, default, float, "a number")


def _bool(name: str, default: bool) -> bool:
    return _setting(name, default, lambda raw: _BOOLEANS[raw.lower()], "on/off (1/0, true/false)")


def _str(name: str, default: str) -> str:
    return _setting(name, default, str, "text")


def _path(name: str, default: Path) -> Path:
    return _setting(name, default, Path, "a path")


def _host_setting(name: str) -> str | None:
    """A platform setting, read verbatim (no prefix): the Functions host and this code must agree
    on one storage connection, Application Insights' agents and this code on one destination, so
    both read the platform's own names."""
    raw = os.environ.get(name)
    return raw.strip() if raw and raw.strip() else None


@dataclass(frozen=True)
class Settings:
    model_path: Path
    manifest_path: Path
    # Intra-op threads for torch. One: it gives the lowest single-image latency, and a second
    # thread without a core of its own stalls every forward pass (SLO run on 2 cores with the
    # load generator beside the server: p95 250 ms with 2 threads, 12 ms with 1). Large batches
    # gain from more (batch 256: ~32k img/s with 1 thread, ~64k with 2) where cores are free.
    torch_threads: int
    # Images per forward pass when classifying many at once.
    batch_size: int
    # Decoded pixels allowed per image (width * height); guards against decompression bombs.
    max_image_pixels: int
    # What decoding may cost, in bytes (pixels x 1 for 8-bit grey or palette, x 4 for other
    # modes; JPEGs after drafting; see preprocess.DecodeBudget): per image, and for all the
    # images of one request (or one batch item) together. 32 MiB is an 8-megapixel colour
    # image or a 32-megapixel grey one; 128 MiB four of them. A pixel count alone let a 91 KB
    # 16-bit PNG cost 1.7 s of CPU, and 64 of them fit in one request. What the costliest
    # inputs within these limits take: python -m bench.hostile (README, "Limits").
    max_decoded_bytes: int
    max_request_decoded_bytes: int
    # HTTP request limits: bytes of one request body (any content type), bytes of a JSON body
    # (parsed in memory, so it gets its own bound), and images per classify request or v2 batch.
    max_body_bytes: int
    max_json_bytes: int
    max_images: int
    # Seconds a client has to send a whole request body (a 408 after): a client that trickles
    # a byte a second would otherwise hold a connection, and its buffer, for as long as it
    # likes. 10 MiB (the body limit) in 20 s needs about 4 Mbit/s.
    body_timeout_s: float
    # Classify / infer requests that do CPU work at once in one process; more wait their turn.
    # One: the event loop needs a core for HTTP and torch's threads take the rest (measured on
    # 2 cores, 16 clients, a grey 280x280 PNG: 630 req/s at 1, 470 at 4, 350 unbounded).
    classify_concurrency: int
    # Dynamic batching (shared/dynamic_batcher.py): classify requests that queue while the
    # model is busy, or arrive within the wait, are worked on together: one thread hop and one
    # forward pass for up to max_size requests (classify_concurrency then bounds batches, not
    # requests). Off, every request runs alone. On, 16, no wait: it pays. Measured on 2 shared
    # cores with the load generator on them, 2 workers, drawings of 300-450 px: Locust capacity
    # at p99 <= 100 ms 751 -> 879 and 742 -> 822 req/s in two runs (make loadtest-capacity),
    # with one worker 402 -> 607; a lone request never waits. The price: a request finishes
    # with the last of its batch, so p50 at moderate load can be a millisecond higher (600/s
    # offered: 6 ms off, 7 on). A wait for more requests (max_wait_ms > 0) costs a lone client
    # the wait itself on every request, so none is the default.
    dynamic_batching: bool
    dynamic_batch_max_size: int
    dynamic_batch_max_wait_ms: float
    # The local server (``python -m local.serve``): one worker process per core by default.
    # A process is GIL-bound (decoding and preprocessing are Python and numpy), so a second core
    # only works through a second process; each loads its own model (about 270 MiB resident)
    # and batches on its own. Keep workers x torch_threads within the cores (2 workers with 2
    # threads each measured 110 req/s against 680 with 1 at 16 clients on 2 cores).
    host: str
    port: int
    workers: int
    # A log line per request from the local server: off by default, since formatting and
    # writing it costs every request and tells nothing the load tests' own statistics do not
    # (16 closed-loop clients, one worker, the log going to a file, 3 alternating rounds on a
    # busy machine: 231 req/s with it, 237 without; a terminal costs more).
    access_log: bool
    # OpenTelemetry's SDK in this process with Prometheus text at /metrics (and OTLP where
    # OTEL_EXPORTER_OTLP_ENDPOINT is set): the local server's own telemetry. Off by default (in
    # Azure, functions/azure_telemetry.py sends to Application Insights); python -m local.serve
    # turns it on unless this says 0.
    metrics: bool
    # Batches: the container the blob trigger watches and the one results go to.
    batch_container: str
    results_container: str
    # Safety limits of one batch (over any of them the whole batch fails with an .error.json):
    # items (array items or archive entries), bytes after decompression, the compression ratio
    # while decompressing (bombs), and bytes of one image inside an archive (read into memory).
    batch_max_items: int
    batch_max_bytes: int
    batch_max_ratio: int
    batch_max_image_bytes: int
    # Items decoded and classified together: large enough that per-chunk overhead vanishes,
    # small enough that a chunk's tiles and probabilities stay a few MB.
    batch_chunk_items: int
    batch_top_k: int
    # Seconds between progress log lines, and between listings of the local poller.
    batch_progress_s: float
    batch_poll_s: float
    # Fan-out (shared/shards.py): a zip, IDX or npy batch of more items than this is split into
    # shards of this many items, each a message on the shard queue that any worker (an instance
    # in Azure, a process locally) classifies; smaller batches are processed in place. See
    # README "Batches" for the measurements behind the default.
    batch_shard_items: int
    shard_queue: str
    # Local stand-in for the queue trigger: processes consuming the shard queue (one per core),
    # and deliveries of one message before it counts as poison (the Functions host's
    # queues.maxDequeueCount default is 5).
    batch_workers: int
    shard_max_deliveries: int
    # Storage for batches, as the Functions host names it: a connection string (Azurite locally:
    # ``UseDevelopmentStorage=true``) or, in Azure, identity-based: the blob service URI and the
    # client id of the user-assigned managed identity.
    storage_connection_string: str | None
    storage_blob_uri: str | None
    storage_queue_uri: str | None
    storage_client_id: str | None
    # Application Insights, under the platform's own names (function-app.bicep sets both): where
    # the deployed app's telemetry goes, and how it signs in there: 'ClientId=<the user-assigned
    # identity>;Authorization=AAD' (the resource takes Entra ID tokens only, its local auth is
    # off). Unset, as in local runs and tests: nothing is sent to Azure
    # (functions/azure_telemetry.py).
    appinsights_connection_string: str | None
    appinsights_authentication: str | None
    # Which machine runs this process, as shard records name it (the summary counts the
    # instances a batch ran on): Azure's WEBSITE_INSTANCE_ID, else the host name.
    instance: str
    # The anonymous demo route of the drawing page (POST /api/demo/classify): one image of at most
    # demo_max_bytes, top 3, nothing to choose. In Azure every other POST needs a function key;
    # this one lets the public page work without one. Off, the route is not served (and not
    # indexed as a function), and the page asks its visitor for a key instead.
    public_demo: bool
    demo_max_bytes: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_path=_path("MODEL_PATH", MODEL_DIR / "emnist_edge.pt"),
            manifest_path=_path("MANIFEST_PATH", MODEL_DIR / "manifest.json"),
            torch_threads=_int("TORCH_THREADS", 1),
            batch_size=_int("BATCH_SIZE", 256),
            max_image_pixels=_int("MAX_IMAGE_PIXELS", 40_000_000),
            max_decoded_bytes=_int("MAX_DECODED_BYTES", 32 * 1024 * 1024),
            max_request_decoded_bytes=_int("MAX_REQUEST_DECODED_BYTES", 128 * 1024 * 1024),
            max_body_bytes=_int("MAX_BODY_BYTES", 10 * 1024 * 1024),
            max_json_bytes=_int("MAX_JSON_BYTES", 10 * 1024 * 1024),
            max_images=_int("MAX_IMAGES", 64),
            body_timeout_s=_float("BODY_TIMEOUT_S", 20.0),
            classify_concurrency=_int("CLASSIFY_CONCURRENCY", 1),
            dynamic_batching=_bool("DYNAMIC_BATCHING", True),
            dynamic_batch_max_size=_int("DYNAMIC_BATCH_MAX_SIZE", 16),
            dynamic_batch_max_wait_ms=_float("DYNAMIC_BATCH_MAX_WAIT_MS", 0.0),
            host=_str("HOST", "127.0.0.1"),
            port=_int("PORT", 7071),
            workers=_int("WORKERS", usable_cores()),
            access_log=_bool("ACCESS_LOG", False),
            metrics=_bool("METRICS", False),
            batch_container=_str("BATCH_CONTAINER", "batches"),
            results_container=_str("RESULTS_CONTAINER", "results"),
            batch_max_items=_int("BATCH_MAX_ITEMS", 2_000_000),
            batch_max_bytes=_int("BATCH_MAX_BYTES", 2 * 1024**3),
            batch_max_ratio=_int("BATCH_MAX_RATIO", 200),
            batch_max_image_bytes=_int("BATCH_MAX_IMAGE_BYTES", 32 * 1024 * 1024),
            batch_chunk_items=_int("BATCH_CHUNK_ITEMS", 2048),
            batch_top_k=_int("BATCH_TOP_K", 3),
            batch_progress_s=_float("BATCH_PROGRESS_S", 10.0),
            batch_poll_s=_float("BATCH_POLL_S", 2.0),
            batch_shard_items=_int("BATCH_SHARD_ITEMS", 10_000),
            shard_queue=_str("SHARD_QUEUE", "batch-shards"),
            batch_workers=_int("BATCH_WORKERS", usable_cores()),
            shard_max_deliveries=_int("SHARD_MAX_DELIVERIES", 5),
            storage_connection_string=_host_setting("AzureWebJobsStorage"),
            storage_blob_uri=_host_setting("AzureWebJobsStorage__blobServiceUri"),
            storage_queue_uri=_host_setting("AzureWebJobsStorage__queueServiceUri"),
            storage_client_id=_host_setting("AzureWebJobsStorage__clientId"),
            appinsights_connection_string=_host_setting("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            appinsights_authentication=_host_setting("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
            instance=_host_setting("WEBSITE_INSTANCE_ID") or socket.gethostname(),
            public_demo=_bool("PUBLIC_DEMO", True),
            demo_max_bytes=_int("DEMO_MAX_BYTES", 1024 * 1024),
        )
