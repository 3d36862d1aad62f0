"""The Azure Functions entry point, tested as Microsoft documents for the v2 model: index the
app's functions, check their bindings, and call the user functions with real HttpRequests."""

from __future__ import annotations

import asyncio
import json
import runpy
from types import SimpleNamespace

import azure.functions as func
import pytest

from shared.config import REPO_ROOT
from shared.model_loader import ModelSpec
from tests.conftest import STROKES, draw_character

KEYED = {"classify": ("classify", ["POST"]), "infer": ("v2/models/{name}/infer", ["POST"])}
# Anonymous POST routes: the page's demo (EMNIST_EDGE_PUBLIC_DEMO, on by default).
OPEN_POSTS = {"demo": ("demo/classify", ["POST"])}


@pytest.fixture(scope="module")
def root(tiny_model_files) -> dict:
    """function_app.py's namespace, run as the worker imports it, with the tiny model's
    settings (storage: Azurite's, unused): its settings, model registry, ASGI app, bridge and
    FunctionApp."""
    patch = pytest.MonkeyPatch()
    patch.setenv("EMNIST_EDGE_MODEL_PATH", str(tiny_model_files[0]))
    patch.setenv("EMNIST_EDGE_MANIFEST_PATH", str(tiny_model_files[1]))
    # Azurite's well-known account: its clients are built, never called.
    patch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    try:
        yield runpy.run_path(str(REPO_ROOT / "function_app.py"))
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def functions(root) -> dict:
    return {fn.get_function_name(): fn for fn in root["app"].get_functions()}


@pytest.fixture(scope="module")
def invoke(root, functions):
    """Call a function's user code as the host would, on one event loop for the module (the
    ASGI lifespan that the first call starts lives on it)."""
    loop = asyncio.new_event_loop()

    def call(fn, method: str, path: str, body: bytes = b"", headers=None,
             route_params=None) -> func.HttpResponse:
        request = func.HttpRequest(
            method=method, url=f"http://localhost:7071{path}", headers=headers or {},
            params={}, route_params=route_params or {}, body=body,
        )
        context = SimpleNamespace(invocation_id="test-invocation", function_name=fn,
                                  function_directory=".", trace_context=None,
                                  retry_context=None, thread_local_storage=None)
        user_function = functions[fn].get_user_function()
        return loop.run_until_complete(user_function(request, context))

    yield call
    if root["bridge"].started:
        loop.run_until_complete(root["bridge"].middleware.notify_shutdown())
    loop.close()


def trigger_of(fn) -> dict:
    bindings = json.loads(fn.get_function_json())["bindings"]
    [trigger] = [b for b in bindings if b["direction"] == "IN"]
    [output] = [b for b in bindings if b["direction"] == "OUT"]
    assert output["type"] == "http"
    return trigger


def test_without_application_insights_the_root_installs_no_telemetry(root):
    """Local runs and tests have no APPLICATIONINSIGHTS_CONNECTION_STRING: nothing is exported
    (tests/unit/test_azure_telemetry.py covers the other case)."""
    assert root["settings"].appinsights_connection_string is None
    assert root["sdk"] is None


def test_requests_batches_and_shards_record_through_the_roots_one_telemetry(
        root, functions, monkeypatch):
    """A second Telemetry on the same SDK would find the collection callback taken by the
    first and could keep its last measurements to itself: every function gets the root's."""
    import functions.blob_batch as blob_batch
    import functions.shard_queue as shard_queue
    from shared.shards import ShardMessage

    given = []
    monkeypatch.setattr(blob_batch, "submit_blob",
                        lambda *args: given.append(args[-1]) or SimpleNamespace(status="done"))
    monkeypatch.setattr(shard_queue, "shard_parts", lambda *args: (None, None))
    monkeypatch.setattr(shard_queue, "run_shard",
                        lambda *args, telemetry, **kwargs: given.append(telemetry) or "done")
    functions["classify_batch"].get_user_function()(SimpleNamespace(blob_name="a.npy"))
    message = func.QueueMessage(body=ShardMessage("a.npy", '"0x1"', 0).encode().encode())
    functions["classify_shard"].get_user_function()(message)
    assert root["api"].state.runtime.telemetry is root["telemetry"]
    assert given == [root["telemetry"], root["telemetry"]]


def test_the_app_has_one_http_function_per_access_level(functions):
    http = {name for name, fn in functions.items() if fn.is_http_function()}
    assert http == {"classify", "infer", "public", "demo"}


@pytest.mark.parametrize("name", sorted(KEYED))
def test_classification_needs_a_function_key(functions, name):
    trigger = trigger_of(functions[name])
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert (trigger["route"], trigger["methods"]) == KEYED[name]
    [binding] = [b for b in functions[name].get_bindings() if b.type == "httpTrigger"]
    assert binding.auth_level == func.AuthLevel.FUNCTION


def test_everything_else_is_an_anonymous_get_only_catch_all(functions):
    trigger = trigger_of(functions["public"])
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "ANONYMOUS"
    assert trigger["route"] == "{*route}"
    # No keyed route answers GET, so the open catch-all cannot reach one.
    assert trigger["methods"] == ["GET"]
    raw = functions["public"].get_raw_bindings()
    assert any('"authLevel": "ANONYMOUS"' in binding for binding in raw)


def test_the_demo_is_an_anonymous_post_of_its_own(functions):
    trigger = trigger_of(functions["demo"])
    assert (trigger["type"], trigger["authLevel"]) == ("httpTrigger", "ANONYMOUS")
    assert (trigger["route"], trigger["methods"]) == OPEN_POSTS["demo"]


def test_every_route_of_the_app_is_reachable_in_azure(root, functions):
    """GETs go through the catch-all; every other method needs a function of its own."""
    own = {(trigger_of(functions[name])["route"], method)
           for name in {**KEYED, **OPEN_POSTS} for method in trigger_of(functions[name])["methods"]}
    for route in root["api"].routes:
        for method in getattr(route, "methods", None) or ():
            if method not in ("GET", "HEAD"):
                assert (route.path.removeprefix("/api/"), method) in own, route.path


def test_health_through_the_function(invoke):
    response = invoke("public", "GET", "/api/health", route_params={"route": "health"})
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "alive"}
    ready = invoke("public", "GET", "/api/health/ready", route_params={"route": "health/ready"})
    assert ready.status_code == 200


def test_page_through_the_function(invoke):
    response = invoke("public", "GET", "/api/", route_params={"route": ""})
    assert response.status_code == 200 and response.mimetype.startswith("text/html")
    assert b'id="canvas"' in response.get_body()


def test_classify_through_the_function(invoke):
    response = invoke("classify", "POST", "/api/classify?top_k=2", draw_character(STROKES["T"]),
                      headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    [result] = json.loads(response.get_body())["results"]
    assert len(result["top_k"]) == 2


def test_classify_errors_through_the_function(invoke):
    response = invoke("classify", "POST", "/api/classify", b"not an image",
                      headers={"Content-Type": "image/png"})
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "invalid_image"


def test_infer_through_the_function(root, invoke):
    name = root["models"].get(ModelSpec.of(root["settings"])).manifest.name
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "UINT8",
                                   "data": [0] * 784}]}).encode()
    response = invoke("infer", "POST", f"/api/v2/models/{name}/infer", body,
                      headers={"Content-Type": "application/json"}, route_params={"name": name})
    assert response.status_code == 200
    assert json.loads(response.get_body())["outputs"][0]["shape"] == [1, 62]


def test_demo_through_the_function(invoke):
    info = invoke("public", "GET", "/api/demo", route_params={"route": "demo"})
    assert json.loads(info.get_body())["classify_url"] == "/api/demo/classify"
    response = invoke("demo", "POST", "/api/demo/classify", draw_character(STROKES["T"]),
                      headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    [result] = json.loads(response.get_body())["results"]
    assert len(result["top_k"]) == 3 and result["processed"].startswith("data:image/png")


@pytest.mark.parametrize(("path", "content_type", "status"), [
    ("/api/demo/classify?top_k=50", "image/png", 400),
    ("/api/demo/classify", "application/json", 415),
    ("/api/demo/classify", "multipart/form-data; boundary=x", 415),
])
def test_the_demo_takes_one_raw_image_and_nothing_else(invoke, path, content_type, status):
    response = invoke("demo", "POST", path, draw_character(STROKES["T"]),
                      headers={"Content-Type": content_type})
    assert response.status_code == status


def test_the_demo_bounds_the_image_size(root, invoke):
    limit = root["settings"].demo_max_bytes
    response = invoke("demo", "POST", "/api/demo/classify", b"\x89PNG" + b"\0" * limit,
                      headers={"Content-Type": "image/png"})
    assert response.status_code == 413
