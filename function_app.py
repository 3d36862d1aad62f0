"""Azure Functions entry point (Python v2 programming model), and the composition root of the
deployed app: the settings are read here, once, and the model registry, the ASGI app and the
blueprints are built from them and passed down.

The host imports this module and indexes ``app``; each blueprint keeps its own triggers and
auth levels next to the code they forward to. Where Application Insights is configured (in
Azure), its exporters go behind the OpenTelemetry API before anything records.
"""

from functools import cache, partial

import azure.functions as func

from functions import azure_telemetry, blob_batch, http_functions, shard_queue
from functions.http_api import create_app
from functions.storage import QueueShards, blob_service, quiet_sdk_http_logging
from functions.storage import shard_queue as shard_queue_client
from shared.config import Settings
from shared.model_loader import ModelRegistry
from shared.process_tuning import tune_process
from shared.telemetry import Telemetry, model_identity

quiet_sdk_http_logging()
tune_process()
settings = Settings.from_env()
# First, so that the app's spans and metrics go to Application Insights from the first request.
sdk = azure_telemetry.install(settings, model_identity(settings.manifest_path))
# The process's one set of instruments, for requests, batches and shards alike.
telemetry = Telemetry()
models = ModelRegistry()
api = create_app(settings, models, telemetry)
bridge = http_functions.AsgiBridge(api)
# The storage account's clients, built at the first batch (indexing needs no storage settings)
# and shared by all that follow (one connection pool, one credential).
storage = cache(partial(blob_service, settings))
shards = QueueShards(partial(shard_queue_client, settings))

app = func.FunctionApp()
app.register_functions(http_functions.blueprint(bridge, settings))
app.register_functions(blob_batch.blueprint(settings, models, storage, shards, telemetry))
app.register_functions(shard_queue.blueprint(settings, models, storage, telemetry))
