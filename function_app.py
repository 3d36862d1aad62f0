"""Azure Functions entry point (Python v2 programming model): it only assembles blueprints.

The host imports this module and indexes ``app``; each blueprint keeps its own triggers and
auth levels next to the code they forward to.
"""

import azure.functions as func

from functions.blob_batch import bp as blob_batch
from functions.http_functions import bp as http_functions

app = func.FunctionApp()
app.register_functions(http_functions)
app.register_functions(blob_batch)
