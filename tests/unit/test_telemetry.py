"""Telemetry through in-memory OpenTelemetry SDK readers: after a good request, a bad request
and a batch, the instruments and spans the dashboards rely on exist with their attributes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from functions.http_api import create_app
from shared.batch import process_batch
from shared.config import REPO_ROOT, Settings
from shared.local_files import LocalFileSource, LocalResultSink
from shared.model_loader import load_model
from shared.shards import ShardMessage, run_shard, submit_batch
from shared.telemetry import Telemetry
from tests.payloads import PNG_7, ink, npy_bytes


@pytest.fixture
def recorded(monkeypatch):
    """A Telemetry on in-memory providers: (telemetry, metric reader, span exporter). They are
    also what OpenTelemetry's global getters return meanwhile, as in a process where the SDK is
    installed (local/telemetry.py, functions/azure_telemetry.py): libraries that record on
    their own (FastAPI does) would show up in them."""
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer_provider)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: meter_provider)
    return Telemetry(meter_provider, tracer_provider), reader, spans


def points(reader: InMemoryMetricReader) -> dict[str, list]:
    """Every data point by instrument name."""
    found: dict[str, list] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_requests_record_metrics_and_spans(recorded, tiny_model_files, models):
    telemetry, reader, spans = recorded
    settings = dataclasses.replace(Settings.from_env(), model_path=tiny_model_files[0],
                                   manifest_path=tiny_model_files[1], torch_threads=1)
    with TestClient(create_app(settings, models, telemetry)) as client:
        assert client.post("/api/classify", content=PNG_7,
                           headers={"Content-Type": "image/png"}).status_code == 200
        assert client.post("/api/classify", content=b"not an image",
                           headers={"Content-Type": "image/png"}).status_code == 400

    found = points(reader)
    requests = {(p.attributes["http.route"], p.attributes["http.response.status_code"]): p.count
                for p in found["emnist_edge.http.duration"]}
    assert requests[("/api/classify", 200)] == 1 and requests[("/api/classify", 400)] == 1
    assert {p.attributes["error.type"] for p in found["emnist_edge.http.errors"]} == {
        "invalid_image"}
    assert {p.attributes["stage"] for p in found["emnist_edge.stage.duration"]} == {
        "decode", "preprocess", "inference"}
    [confidence] = found["emnist_edge.prediction.confidence"]
    assert confidence.count == 1 and len(confidence.attributes["label"]) == 1
    assert sum(p.count for p in found["emnist_edge.dynamic_batch.size"]) == 2

    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["POST /api/classify"] * 2  # one per request
    assert {s.instrumentation_scope.name for s in finished} == {"emnist_edge"}
    assert {scope.scope.name for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics} == {"emnist_edge"}
    good = next(s for s in servers if s.attributes["http.response.status_code"] == 200)
    children = [s for s in finished if s.parent and s.parent.span_id == good.context.span_id]
    assert sorted(s.name for s in children) == ["decode", "inference", "preprocess"]
    bad = next(s for s in servers if s.attributes["http.response.status_code"] == 400)
    assert bad.attributes["error.type"] == "invalid_image"


def test_a_classify_answer_is_sent_before_its_telemetry_is_recorded(recorded, tiny_model_files,
                                                                   models):
    """The stage times, stage spans and predictions are recorded after the answer's last
    byte is sent (a background task), so a client never waits for them."""
    telemetry, reader, spans = recorded
    settings = dataclasses.replace(Settings.from_env(), model_path=tiny_model_files[0],
                                   manifest_path=tiny_model_files[1], torch_threads=1)
    app = create_app(settings, models, telemetry)
    seen_when_sent: list[tuple[set[str], set[str]]] = []

    async def watching(scope, receive, send):
        async def send_watched(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                seen_when_sent.append((set(points(reader)),
                                       {s.name for s in spans.get_finished_spans()}))
            await send(message)

        await app(scope, receive, send_watched if scope["type"] == "http" else send)

    with TestClient(watching) as client:
        assert client.post("/api/classify", content=PNG_7,
                           headers={"Content-Type": "image/png"}).status_code == 200

    [(metric_names, span_names)] = seen_when_sent
    assert "emnist_edge.stage.duration" not in metric_names
    assert "emnist_edge.prediction.confidence" not in metric_names
    assert "preprocess" not in span_names
    found = points(reader)
    assert sum(p.count for p in found["emnist_edge.stage.duration"]) == 3
    assert sum(p.count for p in found["emnist_edge.prediction.confidence"]) == 1
    assert {"decode", "preprocess", "inference"} <= {s.name for s in spans.get_finished_spans()}


def test_a_batch_records_items_by_outcome_and_a_span(recorded, tiny_model_files, tmp_path):
    telemetry, reader, spans = recorded
    tiles = np.concatenate([ink(3), np.zeros((1, 28, 28), np.uint8)])  # one blank: it fails
    path = tmp_path / "four.npy"
    path.write_bytes(npy_bytes(tiles))
    outcome = process_batch(LocalFileSource(path), LocalResultSink(tmp_path), Settings.from_env(),
                            load_model(*tiny_model_files), telemetry=telemetry)
    assert outcome.status == "processed"
    found = points(reader)
    items = {(p.attributes["outcome"], p.attributes.get("error.type")): p.value
             for p in found["emnist_edge.batch.items"]}
    assert items[("succeeded", None)] == 3 and items[("failed", "blank_image")] == 1
    assert sum(p.count for p in found["emnist_edge.batch.chunk.duration"]) >= 1
    (batch,) = [s for s in spans.get_finished_spans() if s.name == "batch"]
    assert batch.attributes["emnist_edge.batch.name"] == "four.npy"
    assert batch.attributes["emnist_edge.batch.outcome"] == "processed"


def test_a_fanned_out_batch_records_a_span_and_items_per_shard(recorded, tiny_model_files,
                                                              tmp_path):
    telemetry, reader, spans = recorded
    path = tmp_path / "ten.npy"
    path.write_bytes(npy_bytes(ink(10)))
    settings = dataclasses.replace(Settings.from_env(), batch_shard_items=4)
    model = load_model(*tiny_model_files)
    source, sink = LocalFileSource(path), LocalResultSink(tmp_path)
    sent: list[str] = []
    submit_batch(source, sink, SimpleNamespace(send=sent.extend), settings, model)
    for text in sent:
        run_shard(ShardMessage.decode(text), source, sink, settings, model, instance="i",
                  telemetry=telemetry)
    shards = [s for s in spans.get_finished_spans() if s.name == "shard"]
    assert sorted(s.attributes["emnist_edge.shard.index"] for s in shards) == [0, 1, 2]
    assert {s.attributes["emnist_edge.shard.items"] for s in shards} == {4, 2}
    items = {p.attributes["outcome"]: p.value for p in points(reader)["emnist_edge.batch.items"]
             if "error.type" not in p.attributes}
    assert items["succeeded"] == 10
    [durations] = points(reader)["emnist_edge.batch.shard.duration"]
    assert durations.count == 3



class RecordingMeter:
    """A meter provider and meter in one, standing in for the SDK: what reaches each
    instrument, and the callbacks a collection would run."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, float]] = []
        self.callbacks: list = []

    def get_meter(self, *args, **kwargs) -> RecordingMeter:
        return self

    def _instrument(self, name: str, *args, **kwargs) -> SimpleNamespace:
        def record(value: float, attributes=None) -> None:
            self.recorded.append((name, value))
        return SimpleNamespace(add=record, record=record)

    create_counter = create_histogram = _instrument

    def create_observable_gauge(self, name: str, callbacks, **kwargs) -> None:
        self.callbacks.extend(callbacks)

    def collect(self) -> list:
        return [list(callback(None)) for callback in self.callbacks]


def test_measurements_reach_the_sdk_in_bulk_and_at_every_collection():
    """Measurements wait until ``flush_every`` of them are buffered and then go to the SDK in
    one go; whatever waits is handed over when a reader collects (an observable instrument's
    callback, which observes nothing), so an export never misses one."""
    meter = RecordingMeter()
    telemetry = Telemetry(meter, flush_every=3)
    telemetry.chunk(1.0)
    telemetry.chunk(2.0)
    assert meter.recorded == []
    telemetry.chunk(3.0)
    assert meter.recorded == [("emnist_edge.batch.chunk.duration", v) for v in (1.0, 2.0, 3.0)]
    telemetry.chunk(4.0)
    assert meter.collect() == [[]]
    assert meter.recorded[-1] == ("emnist_edge.batch.chunk.duration", 4.0)


def test_a_collection_sees_every_measurement_taken_before_it():
    """Through the real SDK: a reader's collection includes what was still buffered."""
    reader = InMemoryMetricReader()
    telemetry = Telemetry(MeterProvider(metric_readers=[reader]), flush_every=1000)
    for duration in (1.0, 2.0, 3.0):
        telemetry.chunk(duration)
    [point] = points(reader)["emnist_edge.batch.chunk.duration"]
    assert (point.count, point.sum) == (3, 6.0)
    assert "emnist_edge.telemetry.flush" not in points(reader)



def test_a_batch_given_no_telemetry_records_nothing_even_with_an_sdk_installed(
        tiny_model_files, tmp_path):
    """Only a root's own Telemetry records (a second one on the same SDK could keep its last
    measurements to itself): in a process whose global SDK is installed, as the roots install
    it, a batch given none records nothing, and one given the root's is recorded."""
    path = tmp_path / "three.npy"
    path.write_bytes(npy_bytes(ink(3)))
    script = f"""
import json
from pathlib import Path
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from shared.batch import process_batch
from shared.config import Settings
from shared.local_files import LocalFileSource, LocalResultSink
from shared.model_loader import load_model
from shared.telemetry import Telemetry

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
model = load_model(Path({str(tiny_model_files[0])!r}), Path({str(tiny_model_files[1])!r}))
seen = []
for telemetry in (None, Telemetry()):
    out = Path({str(tmp_path)!r}) / str(len(seen))
    out.mkdir()
    process_batch(LocalFileSource(Path({str(path)!r})), LocalResultSink(out), Settings.from_env(),
                  model, telemetry=telemetry)
    data = reader.get_metrics_data()
    seen.append(sorted({{m.name for r in data.resource_metrics for s in r.scope_metrics
                        for m in s.metrics}}) if data else [])
print(json.dumps(seen))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    without, given = json.loads(done.stdout.splitlines()[-1])
    assert without == []
    assert "emnist_edge.batch.items" in given
