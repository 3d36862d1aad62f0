"""The local server's OpenTelemetry SDK: Prometheus text at ``/metrics``, and OTLP when asked.

Only the local server installs this (``EMNIST_EDGE_METRICS``, which ``python -m local.serve``
turns on); in Azure the Functions host and ``functions.azure_telemetry`` own telemetry. Each
worker process has its own SDK and so its own ``/metrics``: with several workers a scrape sees
the worker that accepted the connection (run one worker, ``EMNIST_EDGE_WORKERS=1``, for whole
figures). Where ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (an OpenTelemetry collector), traces and
metrics are also pushed there with the standard OTLP/HTTP exporters, configured by the standard
``OTEL_*`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastapi import Response
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.telemetry import resource_attributes

OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def install(model: Mapping[str, str]) -> CollectorRegistry:
    """Install this process's meter (and, with an OTLP endpoint, tracer) provider, the model's
    name, version and sha256 as resource attributes; the registry that ``/metrics`` serves."""
    resource = Resource.create(resource_attributes(model))
    registry = CollectorRegistry()
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if os.environ.get(OTLP_ENDPOINT):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider(resource, readers))
    return registry


def meter_provider(resource: Resource, readers: list[MetricReader]) -> MeterProvider:
    """The local SDK's meter provider (also what ``bench.telemetry_cost`` measures)."""
    # No exemplars: Prometheus' text format has no place for them (and, with OTLP traces on,
    # sampling them for every measurement inside a span is a good part of telemetry's cost).
    return MeterProvider(metric_readers=readers, resource=resource,
                         exemplar_filter=AlwaysOffExemplarFilter())


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in Prometheus text exposition format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
