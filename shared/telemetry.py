"""What the service measures about itself, through the OpenTelemetry API only.

The core records; it never exports. Which SDK, exporter and resource stand behind the API is
chosen at a composition root: the local server sets up Prometheus (``local.telemetry``), the
deployed app Azure Monitor's exporters (``functions.azure_telemetry``), tests an in-memory
reader. With no SDK at all the API is a no-op and recording costs next to nothing.

Instruments (names follow OpenTelemetry's conventions: dotted, units in ``unit``):

- ``emnist_edge.http.duration``: requests by route, method and status, and their durations
  (its count is the number of requests, as with OpenTelemetry's own HTTP metrics, which have no
  separate counter);
- ``emnist_edge.http.errors``: error answers by route and error code;
- ``emnist_edge.stage.duration``: decode, preprocess and inference times of a request;
- ``emnist_edge.dynamic_batch.size``: requests classified in one forward pass;
- ``emnist_edge.prediction.confidence``: the top probability by predicted label, the drift
  signals (its count by label is the mix of what users send, its values how sure the model is);
- ``emnist_edge.batch.items``, ``.batch.duration``, ``.batch.shard.duration``,
  ``.batch.chunk.duration``: batch items by outcome, whole batches processed in place, the
  shards of fanned-out ones, and chunks of either.

Traces: a span per HTTP request (with the stages as children) and a span per batch.

Measurements are buffered and handed to the SDK in bulk: every ``flush_every`` of them, and at
each collection (an observable instrument's callback, which the SDK runs before it reads the
synchronous instruments), so an export never misses one. One SDK record costs 10-15 us of
interpreted code, and about twice that when it runs between the image work of requests (its code
and data are out of the caches by then): in bulk, a classify request's measurements cost
40-45 % of what they did one by one (README, "Telemetry").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import Attributes

from shared.errors import ModelLoadError
from shared.manifest import Manifest

SCOPE = "emnist_edge"
# The service's name in every backend (OpenTelemetry's service.name; Application Insights shows
# it as cloud_RoleName, which the workbook and the alerts of infra/app/alerts.bicep filter on).
SERVICE = "emnist-edge"
# Buckets for latencies of milliseconds to seconds (the default buckets start at 5 ms, too
# coarse for a request that takes 3).
MS_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 10000)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
# Measurements buffered before they are handed to the SDK in one go: under 1 ms a flush, run
# after an answer has been sent. 64 saved as much CPU as 256 did (README, "Telemetry").
FLUSH_EVERY = 64


def model_identity(manifest_path: Path) -> dict[str, str]:
    """The served model's name, version and sha256 from its manifest, for the resource
    attributes (``emnist_edge.model.*``) of whichever SDK a root installs; none if the manifest
    cannot be read (the app then reports the load error itself)."""
    try:
        manifest = Manifest.read(manifest_path)
    except ModelLoadError:
        return {}
    return {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256}


def resource_attributes(model: Mapping[str, str]) -> dict[str, str]:
    """The attributes that name this process's telemetry: the service and the model."""
    return {"service.name": SERVICE, **{f"emnist_edge.model.{k}": v for k, v in model.items()}}


class Telemetry:
    """The instruments of one process, from the providers it is given (the global ones by
    default, which are no-ops until an SDK is installed)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None,
                 tracer_provider: trace.TracerProvider | None = None,
                 flush_every: int = FLUSH_EVERY) -> None:
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._flush_every = flush_every
        self._pending: list[tuple[Callable[[float, Attributes], None], float, Attributes]] = []
        self._lock = threading.Lock()  # batches record from worker threads, collections too
        # Observes nothing: its callback is the SDK's call at each collection (module docstring).
        meter.create_observable_gauge(
            "emnist_edge.telemetry.flush", callbacks=[self._flush_before_collection],
            description="Hands buffered measurements to the SDK before each collection")
        self._duration = meter.create_histogram(
            "emnist_edge.http.duration", unit="ms", description="HTTP request duration",
            explicit_bucket_boundaries_advisory=MS_BUCKETS)
        self._errors = meter.create_counter(
            "emnist_edge.http.errors", unit="{request}",
            description="HTTP error answers by error code")
        self._stages = meter.create_histogram(
            "emnist_edge.stage.duration", unit="ms",
            description="Time per stage of a classify request: decode, preprocess, inference",
            explicit_bucket_boundaries_advisory=MS_BUCKETS)
        self._batch_size = meter.create_histogram(
            "emnist_edge.dynamic_batch.size", unit="{request}",
            description="Classify requests served by one forward pass",
            explicit_bucket_boundaries_advisory=BATCH_SIZE_BUCKETS)
        self._confidence = meter.create_histogram(
            "emnist_edge.prediction.confidence", unit="1",
            description="Probability of the predicted label, by label",
            explicit_bucket_boundaries_advisory=CONFIDENCE_BUCKETS)
        self._items = meter.create_counter(
            "emnist_edge.batch.items", unit="{item}", description="Batch items by outcome")
        self._batch_duration = meter.create_histogram(
            "emnist_edge.batch.duration", unit="s", description="Whole batches, end to end")
        self._shard_duration = meter.create_histogram(
            "emnist_edge.batch.shard.duration", unit="s",
            description="One shard of a fanned-out batch, read, classified and staged")
        self._chunk_duration = meter.create_histogram(
            "emnist_edge.batch.chunk.duration", unit="ms",
            description="Classifying and writing one chunk of a batch",
            explicit_bucket_boundaries_advisory=MS_BUCKETS)

    @classmethod
    def off(cls) -> Telemetry:
        """Telemetry that records nothing, whatever SDK the process has: what a batch or a
        shard gets when its caller passes none. A process's measurements go through the one
        ``Telemetry`` its root builds (a second one on the same SDK would find the collection
        callback taken by the first and could keep its last measurements to itself)."""
        return cls(metrics.NoOpMeterProvider(), trace.NoOpTracerProvider())

    # --- buffering ---------------------------------------------------------------------------

    def _measure(self, record: Callable[[float, Attributes], None], value: float,
                 attributes: Attributes = None) -> None:
        """``record(value, attributes)`` (an instrument's ``add`` or ``record``), buffered."""
        with self._lock:
            self._pending.append((record, value, attributes))
            full = len(self._pending) >= self._flush_every
        if full:
            self.flush()

    def flush(self) -> None:
        """Hand every buffered measurement to the SDK."""
        with self._lock:
            pending, self._pending = self._pending, []
        for record, value, attributes in pending:
            record(value, attributes)

    def _flush_before_collection(self, _options: CallbackOptions) -> Iterable[Observation]:
        self.flush()
        return ()

    # --- HTTP --------------------------------------------------------------------------------

    def request(self, route: str, method: str, status: int, duration_ms: float) -> None:
        self._measure(self._duration.record, duration_ms,
                      {"http.route": route, "http.request.method": method,
                       "http.response.status_code": status})

    def error(self, route: str, code: str) -> None:
        self._measure(self._errors.add, 1, {"http.route": route, "error.type": code})

    def stages(self, timings_ms: Mapping[str, float]) -> None:
        """A classify request's stage times (``decode``, ``preprocess``, ``inference``)."""
        for stage, duration in timings_ms.items():
            self._measure(self._stages.record, duration, {"stage": stage})

    def stage_spans(self, parent: Span, timings_ms: Mapping[str, float], *,
                    end_ns: int) -> None:
        """The stages as children of a request's span, back to back and ending at ``end_ns``
        (when its answer was ready): their durations are measured, their placement is not (a
        request may have waited for the model in between)."""
        context = trace.set_span_in_context(parent)
        end = end_ns
        for stage, duration in reversed(list(timings_ms.items())):
            start = end - int(duration * 1e6)
            self.tracer.start_span(stage, context=context, start_time=start).end(end_time=end)
            end = start

    def dynamic_batch(self, requests: int) -> None:
        self._measure(self._batch_size.record, requests)

    def predictions(self, predicted: Iterable[tuple[str, float]]) -> None:
        """Each image's predicted label and its probability."""
        for label, confidence in predicted:
            self._measure(self._confidence.record, confidence, {"label": label})

    # --- batches -----------------------------------------------------------------------------

    @contextmanager
    def batch_span(self, name: str, size: int) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
                "batch", kind=SpanKind.CONSUMER,
                attributes={"emnist_edge.batch.name": name,
                            "emnist_edge.batch.size_bytes": size}) as span:
            yield span

    @contextmanager
    def shard_span(self, batch: str, shard: int, items: int) -> Iterator[Span]:
        """One shard of a fanned-out batch (``shared.shards``)."""
        with self.tracer.start_as_current_span(
                "shard", kind=SpanKind.CONSUMER,
                attributes={"emnist_edge.batch.name": batch, "emnist_edge.shard.index": shard,
                            "emnist_edge.shard.items": items}) as span:
            yield span

    def batch_items(self, succeeded: int, errors: Mapping[str, int], skipped: int) -> None:
        self._measure(self._items.add, succeeded, {"outcome": "succeeded"})
        for code, count in errors.items():
            self._measure(self._items.add, count, {"outcome": "failed", "error.type": code})
        self._measure(self._items.add, skipped, {"outcome": "skipped"})

    def batch_done(self, duration_s: float, fmt: str) -> None:
        self._measure(self._batch_duration.record, duration_s, {"emnist_edge.batch.format": fmt})

    def shard_done(self, duration_s: float) -> None:
        self._measure(self._shard_duration.record, duration_s)

    def chunk(self, duration_ms: float) -> None:
        self._measure(self._chunk_duration.record, duration_ms)
