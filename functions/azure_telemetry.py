"""Application Insights for the deployed app: OpenTelemetry's SDK with Azure Monitor's exporters,
signed in with the app's managed identity.

``install`` puts a tracer and a meter provider behind the OpenTelemetry API, so the instruments
of ``shared.telemetry`` (requests, stages, batch sizes, labels, confidence, batch items, spans)
reach Application Insights unchanged: server spans become ``requests``, the stage spans
``dependencies``, the metrics ``customMetrics`` (a histogram as its sum, count, minimum and
maximum per export). It does nothing without ``APPLICATIONINSIGHTS_CONNECTION_STRING``, so local
runs and tests send nothing, and it imports the SDK only when it installs it.

Why the exporters and not the Azure Monitor distro (``azure-monitor-opentelemetry``, the
"one-line setup" that the Functions OpenTelemetry guide shows): the distro is a
``configure_azure_monitor()`` over these same exporters plus instrumentations this app does not
use (Django, Flask, psycopg2, requests, urllib, httpx, FastAPI: its HTTP spans come from
``functions.request_telemetry`` instead); its release 1.8.11 cannot be installed beside
OpenTelemetry 1.45.2 (its Flask and psycopg2 instrumentations exist as 0.66b1 only, which pins
the API to 1.45.1); and it costs 27 new packages (3.9 MB zipped) and 0.4-0.9 s for
``configure_azure_monitor`` alone at each cold start, against 7 (2.6 MB) and 0.12 s to import
and set up these in a warm process, about 0.4 s in a cold start of the package (infra/README.md,
"Telemetry, the workbook and the alerts"). The
exporter, "intended for users who require advanced configuration":
https://pypi.org/project/azure-monitor-opentelemetry-exporter/1.0.0b58

Sign-in: the exporters take a token credential; for a user-assigned identity that is
``ManagedIdentityCredential(client_id=...)`` ("Microsoft Entra authentication for Application
Insights", Python: https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication?tabs=python).
The client id comes from ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
(``ClientId=<id>;Authorization=AAD``), the setting the Functions host reads for its own
telemetry, so that host and worker sign in as the same identity, which holds Monitoring
Metrics Publisher on the resource (infra/app/rbac.bicep).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.config import Settings
from shared.telemetry import resource_attributes

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

# The exporters log every successful upload at INFO, which the Functions host would ship to
# Application Insights in turn: one trace line per export, forever.
EXPORTER_LOGGER = "azure.monitor.opentelemetry.exporter"


@dataclass(frozen=True)
class Installed:
    """What ``install`` put behind the API (kept by the root for the process's lifetime)."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider


def entra_identity(authentication: str | None) -> dict[str, str] | None:
    """The managed identity an ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names, as
    ``ManagedIdentityCredential`` arguments: ``{"client_id": ...}`` for a user-assigned identity
    (``ClientId=<id>;Authorization=AAD``), ``{}`` for the system-assigned one
    (``Authorization=AAD``); None when it does not ask for Entra ID."""
    pairs = {}
    for part in (authentication or "").split(";"):
        key, _, value = part.partition("=")
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("authorization", "").upper() != "AAD":
        return None
    return {"client_id": pairs["clientid"]} if pairs.get("clientid") else {}


def install(settings: Settings, model: Mapping[str, str]) -> Installed | None:
    """Send this process's traces and metrics to Application Insights, with the model's name,
    version and sha256 as resource attributes; nothing (None) without a connection string."""
    connection_string = settings.appinsights_connection_string
    if not connection_string:
        return None
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # One credential for both exporters (one token cache). Without Entra ID in the setting the
    # exporters fall back to the instrumentation key, which this project's resource refuses.
    identity = entra_identity(settings.appinsights_authentication)
    credential = ManagedIdentityCredential(**identity) if identity is not None else None
    options = {"connection_string": connection_string, "credential": credential}
    resource = Resource.create(resource_attributes(model))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(AzureMonitorTraceExporter(**options)))
    # The reader exports every 60 s (OTEL_METRIC_EXPORT_INTERVAL), in the delta temporality the
    # exporter asks for: each customMetrics row holds one interval.
    # No exemplars: Application Insights' customMetrics has no place for them, and sampling
    # them for every measurement taken inside a span cost about 15 % of the telemetry's time
    # per request (in process, SDK on).
    meter_provider = MeterProvider(
        resource=resource, exemplar_filter=AlwaysOffExemplarFilter(),
        metric_readers=[PeriodicExportingMetricReader(AzureMonitorMetricExporter(**options))])
    logging.getLogger(EXPORTER_LOGGER).setLevel(logging.WARNING)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return Installed(tracer_provider, meter_provider)
