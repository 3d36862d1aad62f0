"""What the load generator needs to know about the app it loads, from the environment.

Only what any client of a deployed app would be given: the function key it sends, and for the
batch users the storage account and its two containers. Read here, not through the service's
own settings (``shared.config``): the load tests run against the deployed app with nothing but
their own requirements (``loadtests/requirements.txt``), and must agree with the app only on
the names below, which the README's settings table documents.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# The key a deployed app's Functions host checks (the app itself never does).
FUNCTION_KEY_VARIABLE = "EMNIST_EDGE_FUNCTION_KEY"
# The storage the app's blob trigger watches, under the Functions host's own names: a
# connection string (Azurite locally: ``UseDevelopmentStorage=true``) or, identity-based, the
# blob service URI and the client id of a user-assigned managed identity.
STORAGE_VARIABLE = "AzureWebJobsStorage"
STORAGE_URI_VARIABLE = "AzureWebJobsStorage__blobServiceUri"
STORAGE_CLIENT_ID_VARIABLE = "AzureWebJobsStorage__clientId"
# The containers batches go to and results come from, as the app names them.
BATCH_CONTAINER_VARIABLE = "EMNIST_EDGE_BATCH_CONTAINER"
RESULTS_CONTAINER_VARIABLE = "EMNIST_EDGE_RESULTS_CONTAINER"


def _value(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name)
    return raw.strip() if raw and raw.strip() else None


@dataclass(frozen=True)
class ClientSettings:
    function_key: str | None = None
    storage_connection_string: str | None = None
    storage_blob_uri: str | None = None
    storage_client_id: str | None = None
    batch_container: str = "batches"
    results_container: str = "results"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """From ``environ`` (default: this process's environment); blank counts as unset."""
        env = os.environ if environ is None else environ
        return cls(
            function_key=_value(env, FUNCTION_KEY_VARIABLE),
            storage_connection_string=_value(env, STORAGE_VARIABLE),
            storage_blob_uri=_value(env, STORAGE_URI_VARIABLE),
            storage_client_id=_value(env, STORAGE_CLIENT_ID_VARIABLE),
            batch_container=_value(env, BATCH_CONTAINER_VARIABLE) or cls.batch_container,
            results_container=_value(env, RESULTS_CONTAINER_VARIABLE) or cls.results_container,
        )

    @property
    def has_storage(self) -> bool:
        """Whether batch users can run: some way to reach the storage account is set."""
        return bool(self.storage_connection_string or self.storage_blob_uri)

    @property
    def headers(self) -> dict[str, str]:
        """What every request carries: the function key, when there is one."""
        return {"x-functions-key": self.function_key} if self.function_key else {}
