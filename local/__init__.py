"""Local stand-ins for the Azure Functions host, never deployed (``.funcignore``): the uvicorn
server (``local.serve``) and the app each of its workers builds (``local.app``), its launcher in
a subprocess for the tests and benchmarks (``local.server``), Azurite (``local.azurite``), the
poller that plays Event Grid and the blob trigger (``local.poller``), and the local server's
OpenTelemetry SDK (``local.telemetry``)."""
