"""The deployed app's Application Insights adapter (functions/azure_telemetry.py): nothing without
a connection string; with one, Azure Monitor's exporters behind the OpenTelemetry API, signed in
with the managed identity, the model on the resource, and the core's instruments reaching them.

Only the exporters (the part that talks to Azure) are replaced, and the global setters (a
process can install its providers once): the credential, the SDK and its pipeline are real."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import azure.identity
import azure.monitor.opentelemetry.exporter as exporters
import opentelemetry.metrics
import opentelemetry.trace
import pytest
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from functions import azure_telemetry
from shared.config import Settings
from shared.telemetry import SERVICE, Telemetry, model_identity

CONNECTION = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
              "IngestionEndpoint=https://127.0.0.1:9/")
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def settings_with(**changes) -> Settings:
    return dataclasses.replace(Settings.from_env(), **changes)


@pytest.mark.parametrize(("setting", "identity"), [
    (f"ClientId={CLIENT_ID};Authorization=AAD", {"client_id": CLIENT_ID}),  # function-app.bicep
    (f"Authorization=AAD;ClientId={CLIENT_ID}", {"client_id": CLIENT_ID}),  # Microsoft's order
    (f" clientid = {CLIENT_ID} ; authorization = aad ", {"client_id": CLIENT_ID}),
    ("Authorization=AAD", {}),  # a system-assigned identity
    (f"ClientId={CLIENT_ID}", None),
    ("", None),
    (None, None),
])
def test_the_authentication_setting_names_the_managed_identity(setting, identity):
    assert azure_telemetry.entra_identity(setting) == identity


def test_without_a_connection_string_nothing_is_installed(monkeypatch):
    def refuse(*_):
        raise AssertionError("a provider was installed")

    monkeypatch.setattr(opentelemetry.trace, "set_tracer_provider", refuse)
    monkeypatch.setattr(opentelemetry.metrics, "set_meter_provider", refuse)
    settings = settings_with(appinsights_connection_string=None,
                             appinsights_authentication=f"ClientId={CLIENT_ID};Authorization=AAD")
    assert azure_telemetry.install(settings, {"name": "m"}) is None


class SpanExporterSpy(InMemorySpanExporter):
    made: ClassVar[list[SpanExporterSpy]] = []

    def __init__(self, **options):
        super().__init__()
        self.options = options
        self.made.append(self)


class MetricExporterSpy(MetricExporter):
    made: ClassVar[list[MetricExporterSpy]] = []

    def __init__(self, **options):
        super().__init__()
        self.options = options
        self.exported: list = []
        self.made.append(self)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


@pytest.fixture
def installed(monkeypatch, tiny_model_files):
    """``install`` with a connection string and the user-assigned identity, as in Azure:
    (what it installed, the exporters it made, the credentials it made, the globals it set)."""
    credentials = []

    class CredentialSpy(azure.identity.ManagedIdentityCredential):
        def __init__(self, **kwargs):
            credentials.append((self, kwargs))
            super().__init__(**kwargs)

    globals_set = {}
    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", CredentialSpy)
    monkeypatch.setattr(exporters, "AzureMonitorTraceExporter", SpanExporterSpy)
    monkeypatch.setattr(exporters, "AzureMonitorMetricExporter", MetricExporterSpy)
    monkeypatch.setattr(SpanExporterSpy, "made", [])
    monkeypatch.setattr(MetricExporterSpy, "made", [])
    monkeypatch.setattr(opentelemetry.trace, "set_tracer_provider",
                        lambda provider: globals_set.setdefault("tracer", provider))
    monkeypatch.setattr(opentelemetry.metrics, "set_meter_provider",
                        lambda provider: globals_set.setdefault("meter", provider))
    settings = settings_with(appinsights_connection_string=CONNECTION,
                             appinsights_authentication=f"ClientId={CLIENT_ID};Authorization=AAD",
                             manifest_path=tiny_model_files[1])
    done = azure_telemetry.install(settings, model_identity(settings.manifest_path))
    yield done, SpanExporterSpy.made, MetricExporterSpy.made, credentials, globals_set
    done.tracer_provider.shutdown()
    done.meter_provider.shutdown()


def test_with_a_connection_string_the_exporters_sign_in_with_the_managed_identity(installed):
    done, [spans], [metrics], credentials, globals_set = installed
    [(credential, arguments)] = credentials
    assert isinstance(credential, azure.identity.ManagedIdentityCredential)
    assert arguments == {"client_id": CLIENT_ID}
    for exporter in (spans, metrics):
        assert exporter.options == {"connection_string": CONNECTION, "credential": credential}
    # The providers are the API's globals, so every instrument of the core reports through them.
    assert globals_set == {"tracer": done.tracer_provider, "meter": done.meter_provider}


def test_the_core_instruments_reach_the_exporters_with_the_model_on_the_resource(
        installed, tiny_model_files):
    done, [spans], [metrics], *_ = installed
    telemetry = Telemetry(done.meter_provider, done.tracer_provider)
    with telemetry.tracer.start_as_current_span("POST /api/classify"):
        telemetry.request("/api/classify", "POST", 200, 3.2)
    telemetry.error("/api/classify", "invalid_image")
    telemetry.predictions([("7", 0.98)])
    telemetry.batch_items(9, {"invalid_image": 1}, 0)
    assert done.tracer_provider.force_flush()
    assert done.meter_provider.force_flush()

    [span] = spans.get_finished_spans()
    assert span.name == "POST /api/classify"
    exported = {metric.name for data in metrics.exported
                for resource in data.resource_metrics for scope in resource.scope_metrics
                for metric in scope.metrics}
    assert exported >= {"emnist_edge.http.duration", "emnist_edge.http.errors",
                        "emnist_edge.prediction.confidence", "emnist_edge.batch.items"}
    # The request was measured inside a sampled span, yet carries no exemplar: install turns
    # them off (Application Insights has no place for them; sampling them costs time).
    assert not [point for data in metrics.exported for resource in data.resource_metrics
                for scope in resource.scope_metrics for metric in scope.metrics
                for point in metric.data.data_points if point.exemplars]

    # Both signals carry the service (cloud_RoleName in Application Insights) and the model.
    model = model_identity(tiny_model_files[1])
    assert set(model) == {"name", "version", "sha256"}
    resources = [span.resource] + [resource.resource for data in metrics.exported
                                   for resource in data.resource_metrics]
    for resource in resources:
        assert resource.attributes["service.name"] == SERVICE
        assert {key: resource.attributes[f"emnist_edge.model.{key}"] for key in model} == model


def test_the_real_exporters_take_these_options(monkeypatch, tmp_path):
    """The options install passes are the exporters' own keywords (no network: the credential
    asks for a token only when a batch is sent; Microsoft's statsbeat is switched off here)."""
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    credential = azure.identity.ManagedIdentityCredential(client_id=CLIENT_ID)
    for kind in (exporters.AzureMonitorTraceExporter, exporters.AzureMonitorMetricExporter):
        exporter = kind(connection_string=CONNECTION, credential=credential,
                        storage_directory=str(tmp_path / kind.__name__))
        assert exporter._credential is credential
        assert exporter._instrumentation_key == "00000000-0000-0000-0000-000000000000"
        exporter.shutdown()
