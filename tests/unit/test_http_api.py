"""The ASGI app in-process (FastAPI's TestClient): every route, input form and error mapping."""

from __future__ import annotations

import base64
import dataclasses
import gc
import io
import json

import anyio
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from functions import http_classify
from functions.http_api import create_app
from functions.multipart import parse_multipart
from functions.schemas import ClassifyResponse, ErrorResponse, InferResponse, ModelMetadata
from shared import model_loader
from shared.config import Settings
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.model_loader import ModelRegistry, ModelSpec
from tests.conftest import STROKES, draw_character

MAX_BODY = 200_000
MAX_IMAGES = 4
SEVEN = draw_character(STROKES["7"])
ELL = draw_character(STROKES["L"])
BLANK = draw_character([])
PNG = {"Content-Type": "image/png"}


def settings_for(model_files, **changes) -> Settings:
    model_path, manifest_path = model_files
    return dataclasses.replace(
        Settings.from_env(), model_path=model_path, manifest_path=manifest_path,
        max_body_bytes=MAX_BODY, max_json_bytes=MAX_BODY, max_images=MAX_IMAGES,
        torch_threads=1, **changes,
    )


@pytest.fixture(scope="module")
def client(tiny_model_files, models):
    with TestClient(create_app(settings_for(tiny_model_files), models)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def model(client, tiny_model_files, models):
    return models.loaded(ModelSpec.of(settings_for(tiny_model_files)))


def error_of(response) -> dict[str, str]:
    body = response.json()
    ErrorResponse.model_validate(body)
    return body["error"]


def multipart(*files: tuple[str, bytes], **fields: str) -> dict:
    return {
        "files": [("images", (name, data, "image/png")) for name, data in files],
        "data": fields,
    }


# --- classify: the three input forms ---------------------------------------------------------


def test_raw_image_gives_top_k_and_timings(client, model):
    response = client.post("/api/classify", content=SEVEN, headers=PNG)
    assert response.status_code == 200
    body = ClassifyResponse.model_validate(response.json())
    assert body.model.name == model.manifest.name
    assert body.model.sha256 == model.manifest.sha256
    [result] = body.results
    assert result.index == 0 and result.name is None and result.processed is None
    assert len(result.top_k) == 3 and result.label == result.top_k[0].label
    assert [r.probability for r in result.top_k] == sorted(
        (r.probability for r in result.top_k), reverse=True)
    timings = body.timings_ms
    assert timings.total >= timings.preprocess + timings.inference >= 0


def test_a_raw_image_is_answered_without_a_hop_to_a_worker_thread(client, monkeypatch):
    """A hop to a worker thread and back cost a lone request about 0.6 ms: a single raw image
    (what realtime clients send) takes none, dependencies included."""
    hops = []
    real = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert client.post("/api/classify", content=SEVEN, headers=PNG).status_code == 200
    assert hops == []
    # multipart goes to a thread (parsing and several images): the count sees hops
    files = multipart(("a.png", SEVEN))
    assert client.post("/api/classify", **files).status_code == 200
    assert hops


def test_octet_stream_is_an_image_too(client):
    response = client.post("/api/classify", content=SEVEN,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200


def test_processed_tile_is_the_28x28_model_input(client):
    response = client.post("/api/classify?include_processed=true", content=SEVEN, headers=PNG)
    data_url = response.json()["results"][0]["processed"]
    assert data_url.startswith("data:image/png;base64,")
    tile = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    assert tile.size == (28, 28) and tile.mode == "L"
    pixels = np.asarray(tile)
    assert pixels.max() == 255 and pixels[0, 0] == 0  # white ink on black, centred


def test_multipart_keeps_part_order_and_names_with_errors_inline(client):
    response = client.post(
        "/api/classify",
        files=[("first", ("seven.png", SEVEN, "image/png")),
               ("x", ("notes.txt", b"not an image", "text/plain")),
               ("y", ("blank.png", BLANK, "image/png")),
               ("z", ("ell.png", ELL, "image/png"))],
        data={"top_k": "2"},
    )
    assert response.status_code == 200
    results = ClassifyResponse.model_validate(response.json()).results
    assert [(r.index, r.name) for r in results] == [
        (0, "seven.png"), (1, "notes.txt"), (2, "blank.png"), (3, "ell.png")]
    assert len(results[0].top_k) == 2 and len(results[3].top_k) == 2
    assert results[1].error.code == "invalid_image" and results[1].label is None
    assert results[2].error.code == "blank_image"


def test_results_match_single_requests_and_use_one_forward_pass(client, monkeypatch):
    singles = [client.post("/api/classify", content=image, headers=PNG).json()["results"][0]
               for image in (SEVEN, ELL)]
    calls = []
    real = model_loader.LoadedModel.probabilities
    monkeypatch.setattr(model_loader.LoadedModel, "probabilities",
                        lambda self, tiles: calls.append(len(tiles)) or real(self, tiles))
    response = client.post("/api/classify", **multipart(("a.png", SEVEN), ("b.png", ELL)))
    assert calls == [2]
    for single, batched in zip(singles, response.json()["results"], strict=True):
        assert single["label"] == batched["label"]
        assert single["probability"] == pytest.approx(batched["probability"], abs=1e-5)


def test_json_accepts_base64_data_urls_and_url_safe_unpadded(client):
    plain = base64.b64encode(SEVEN).decode()
    data_url = "data:image/png;base64," + base64.b64encode(ELL).decode()
    url_safe = base64.urlsafe_b64encode(SEVEN).decode().rstrip("=")
    wrapped = "\n".join(plain[i:i + 76] for i in range(0, len(plain), 76))
    response = client.post("/api/classify", json={
        "images": [plain, data_url, url_safe, wrapped], "top_k": 1, "include_processed": True})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [len(r["top_k"]) for r in results] == [1, 1, 1, 1]
    assert all(r["processed"].startswith("data:image/png") for r in results)
    assert results[0]["label"] == results[2]["label"] == results[3]["label"]


def test_query_options_win_over_body_options(client):
    body = {"images": [base64.b64encode(SEVEN).decode()], "top_k": 1, "include_processed": True}
    response = client.post("/api/classify?top_k=5&include_processed=false", json=body)
    [result] = response.json()["results"]
    assert len(result["top_k"]) == 5 and "processed" not in result


# --- classify: errors --------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", ["0", "63", "-1", "three"])
def test_top_k_out_of_range_or_not_a_number(client, top_k):
    response = client.post(f"/api/classify?top_k={top_k}", content=SEVEN, headers=PNG)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_parameter"
    assert "top_k" in error_of(response)["message"]


def test_top_k_bounds_are_inclusive(client):
    for top_k in (1, 62):
        response = client.post(f"/api/classify?top_k={top_k}", content=SEVEN, headers=PNG)
        assert len(response.json()["results"][0]["top_k"]) == top_k


def test_bad_form_field_is_a_400(client):
    form = multipart(("a.png", SEVEN), include_processed="maybe")
    response = client.post("/api/classify", **form)
    assert response.status_code == 400 and "include_processed" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [(b"GIF89a this is no image", 400, "invalid_image"), (SEVEN[:200], 400, "invalid_image"),
     (b"", 400, "invalid_image"), (BLANK, 422, "blank_image")],
    ids=["not-an-image", "truncated", "empty", "blank"],
)
def test_a_single_failed_image_sets_the_status(client, content, status, code):
    response = client.post("/api/classify", content=content, headers=PNG)
    assert response.status_code == status
    body = response.json()
    assert error_of(response)["code"] == code
    assert body["results"] == [{"index": 0, "name": None, "error": body["error"]}]
    assert set(body["timings_ms"]) == {"decode", "preprocess", "inference", "total"}


def test_when_all_fail_the_first_failure_decides(client):
    response = client.post("/api/classify", **multipart(("b.png", BLANK), ("x.png", b"junk")))
    assert response.status_code == 422
    assert [r["error"]["code"] for r in response.json()["results"]] == [
        "blank_image", "invalid_image"]


def test_too_many_pixels_is_a_413(client, tiny_model_files, models):
    small = settings_for(tiny_model_files, max_image_pixels=100 * 100)
    with TestClient(create_app(small, models)) as limited:
        response = limited.post("/api/classify", content=SEVEN, headers=PNG)
    assert response.status_code == 413 and error_of(response)["code"] == "image_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_unsupported_media_type(client, content_type):
    response = client.post("/api/classify", content=SEVEN, headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert "multipart/form-data" in error_of(response)["message"]


def test_body_over_the_limit_by_content_length(client):
    response = client.post("/api/classify", content=b"x" * (MAX_BODY + 1), headers=PNG)
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_body_over_the_limit_while_streaming(client):
    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(MAX_BODY // 10_000 + 1):
            yield b"x" * 10_000

    response = client.post("/api/classify", content=chunks(), headers=PNG)
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_bad_content_length(client):
    response = client.post("/api/classify", content=SEVEN,
                           headers={**PNG, "Content-Length": "lots"})
    assert response.status_code == 400


@pytest.mark.parametrize("form", ["multipart", "json"])
def test_too_many_images_is_a_413(client, form):
    count = MAX_IMAGES + 1
    if form == "multipart":
        response = client.post("/api/classify", **multipart(*[("a.png", SEVEN)] * count))
    else:
        response = client.post("/api/classify",
                               json={"images": [base64.b64encode(SEVEN).decode()] * count})
    assert response.status_code == 413 and "at most 4" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"{not json", "Invalid JSON"), (b'{"images": []}', "images"),
     (b'{"image": ["aGk="]}', "image"), (b'{"images": ["***"]}', "images[0]"),
     (b'{"images": ["data:image/png,abc"]}', "data: URL"), (b'{"images": [1]}', "images.0")],
    ids=["syntax", "empty", "unknown-field", "bad-base64", "data-url-not-base64", "not-a-string"],
)
def test_malformed_json(client, body, fragment):
    response = client.post("/api/classify", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert fragment in error_of(response)["message"]


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [("multipart/form-data", b"--x\r\n", "boundary"),
     ("multipart/form-data; boundary=x",
      b'--x\r\nContent-Disposition: form-data; name="a"; filename="a.png"\r\n\r\nabc', "truncated"),
     ("multipart/form-data; boundary=x",
      b'--x\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n3\r\n--x--\r\n', "no image")],
    ids=["no-boundary", "truncated", "no-files"],
)
def test_malformed_multipart(client, content_type, body, fragment):
    response = client.post("/api/classify", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400 and fragment in error_of(response)["message"]


def test_multipart_parts_without_file_name_but_with_an_image_type_are_images():
    body = (b'--b\r\nContent-Disposition: form-data; name="pic"\r\nContent-Type: image/png\r\n\r\n'
            b'PNGDATA\r\n--b\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n2\r\n--b--\r\n')
    form = parse_multipart(body, "multipart/form-data; boundary=b", max_images=2)
    assert [(u.name, u.data) for u in form.images] == [(None, b"PNGDATA")]
    assert form.fields == {"top_k": "2"}
    with pytest.raises(PayloadTooLarge):
        parse_multipart(body, "multipart/form-data; boundary=b", max_images=0)
    with pytest.raises(InvalidRequest, match="boundary"):
        parse_multipart(body, "multipart/form-data", max_images=2)


def test_unexpected_errors_are_logged_and_answered_without_a_traceback(client, monkeypatch,
                                                                        caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(http_classify, "classify_uploads", explode)
    response = client.post("/api/classify", content=SEVEN, headers=PNG)
    assert response.status_code == 500
    assert response.json() == {"error": {
        "code": "internal_error", "message": "an unexpected error occurred; it has been logged"}}
    assert "secret" not in response.text
    assert "secret internal detail" in caplog.text


def test_unknown_routes_and_methods_answer_json(client):
    assert error_of(client.get("/api/nothing-here"))["code"] == "not_found"
    response = client.get("/api/classify")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


# --- health, model, docs, page -----------------------------------------------------------------


def test_health_and_readiness(client, model):
    assert client.get("/api/health").json() == {"status": "alive"}
    ready = client.get("/api/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": model.manifest.name,
                                     "version": model.manifest.version}


def test_model_info_is_the_public_manifest(client, model):
    assert client.get("/api/model").json() == json.loads(json.dumps(model.manifest.public()))


def test_a_model_that_fails_to_load_leaves_the_process_live_but_not_ready(
    tmp_path, caplog, models
):
    missing = (tmp_path / "none.pt", tmp_path / "none.json")
    with TestClient(create_app(settings_for(missing), models)) as broken:
        assert broken.get("/api/health").status_code == 200
        for path in ("/api/health/ready", "/api/v2/health/ready"):
            assert broken.get(path).status_code == 503
        error = error_of(broken.get("/api/health/ready"))
        assert error["code"] == "model_not_ready" and "failed to load" in error["message"]
        assert broken.get("/api/v2/health/ready").json()["error"].startswith("the model")
        response = broken.post("/api/classify", content=SEVEN, headers=PNG)
        assert response.status_code == 503
        assert error_of(response)["code"] == "model_load_error"
        assert broken.get("/api/model").status_code == 503
    assert "failed to load" in caplog.text


def test_openapi_and_docs(client):
    spec = client.get("/api/openapi.json").json()
    assert {"/api/classify", "/api/health", "/api/health/ready", "/api/model",
            "/api/v2/models/{name}/infer"} <= set(spec["paths"])
    body = spec["paths"]["/api/classify"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data", "application/json"} <= set(body)
    assert "swagger" in client.get("/api/docs").text.lower()


def test_every_reference_in_the_openapi_document_resolves(client):
    spec = client.get("/api/openapi.json").json()

    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    found = set(refs(spec))
    assert found  # the responses refer to components, so there is something to check
    for ref in found:
        assert ref.startswith("#/"), ref
        target = spec
        for part in ref[2:].split("/"):
            assert part in target, f"{ref} points at nothing"
            target = target[part]


@pytest.mark.parametrize("path", ["/", "/api", "/api/", "/api/page"])
def test_page_is_served_with_its_assets(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    for element in ('id="canvas"', 'id="classify"', 'id="clear"', 'id="file"', 'id="results"',
                    'id="preview"', 'id="error"', 'id="model-info"'):
        assert element in response.text
    for asset in ("/api/static/app.js", "/api/static/style.css"):
        assert asset in response.text and client.get(asset).status_code == 200


# --- Open Inference Protocol v2 --------------------------------------------------------------


def tiles(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def test_v2_health_and_metadata(client, model):
    assert client.get("/api/v2/health/live").json() == {"live": True}
    assert client.get("/api/v2/health/ready").json() == {"ready": True}
    name = model.manifest.name
    assert client.get(f"/api/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    metadata = ModelMetadata.model_validate(client.get(f"/api/v2/models/{name}").json())
    assert metadata.platform == "pytorch_torchscript"
    assert metadata.versions == [model.manifest.version]
    assert metadata.outputs[0].shape == [-1, 62] and metadata.outputs[0].datatype == "FP32"
    assert metadata.inputs[0].name == "input" and metadata.inputs[0].shape[-2:] == [28, 28]


@pytest.mark.parametrize("layout", ["flat-uint8", "nested-uint8", "channel-fp32"])
def test_v2_infer_matches_the_model(client, model, layout):
    batch = tiles(3)
    if layout == "flat-uint8":
        tensor = {"shape": [3, 28, 28], "datatype": "UINT8", "data": batch.ravel().tolist()}
    elif layout == "nested-uint8":
        tensor = {"shape": [3, 28, 28], "datatype": "UINT8", "data": batch.tolist()}
    else:
        tensor = {"shape": [3, 1, 28, 28], "datatype": "FP32",
                  "data": (batch / 255.0).ravel().tolist()}
    response = client.post(f"/api/v2/models/{model.manifest.name}/infer",
                           json={"id": "req-1", "inputs": [{"name": "input", **tensor}]})
    assert response.status_code == 200
    answer = InferResponse.model_validate(response.json())
    assert answer.id == "req-1" and answer.model_name == model.manifest.name
    [output] = answer.outputs
    assert output.name == "probabilities" and output.shape == [3, 62]
    expected = model.probabilities(batch).numpy().ravel()
    np.testing.assert_allclose(output.data, expected, atol=1e-5)


def test_v2_without_id_answers_without_id(client, model):
    response = client.post(f"/api/v2/models/{model.manifest.name}/infer", json={"inputs": [
        {"name": "input", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]})
    assert response.status_code == 200 and "id" not in response.json()


def test_v2_unknown_model_is_a_404(client):
    for response in (client.get("/api/v2/models/other"),
                     client.get("/api/v2/models/other/ready"),
                     client.post("/api/v2/models/other/infer", json={})):
        assert response.status_code == 404
        assert "other" in response.json()["error"]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [({"shape": [1, 28, 27]}, "shape"), ({"shape": [0, 28, 28], "data": []}, "shape"),
     ({"datatype": "INT64"}, "datatype"), ({"data": [0] * 783}, "783 values"),
     ({"data": [[0] * 784, [0] * 3]}, "regular array"), ({"data": [256] * 784}, "0-255"),
     ({"data": [0.5] * 784}, "0-255"), ({"datatype": "FP32", "data": [2.0] * 784}, "0-1"),
     ({"name": "pixels"}, "unknown input")],
    ids=["shape", "empty", "datatype", "length", "ragged", "uint8-range", "uint8-fraction",
         "fp32-range", "input-name"],
)
def test_v2_bad_tensors_are_400s_in_the_v2_shape(client, model, tensor, fragment):
    request = {"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "UINT8",
                           "data": [0] * 784, **tensor}]}
    response = client.post(f"/api/v2/models/{model.manifest.name}/infer", json=request)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and fragment in response.json()["error"]


def test_v2_malformed_requests(client, model):
    url = f"/api/v2/models/{model.manifest.name}/infer"
    syntax = client.post(url, content=b"{", headers={"Content-Type": "application/json"})
    assert syntax.status_code == 400 and "JSON" in syntax.json()["error"]
    no_inputs = client.post(url, json={"inputs": []})
    assert no_inputs.status_code == 400 and "inputs" in no_inputs.json()["error"]
    outputs = client.post(url, json={"outputs": [{"name": "logits"}], "inputs": [
        {"name": "input", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]})
    assert outputs.status_code == 400 and "logits" in outputs.json()["error"]
    too_many = client.post(url, json={"inputs": [
        {"name": "input", "shape": [MAX_IMAGES + 1, 28, 28], "datatype": "UINT8", "data": []}]})
    assert too_many.status_code == 413
    too_big = client.post(url, content=b" " * (MAX_BODY + 1),
                          headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and set(too_big.json()) == {"error"}


def test_v2_probabilities_sum_to_one(client, model):
    response = client.post(f"/api/v2/models/{model.manifest.name}/infer", json={"inputs": [
        {"name": "input", "shape": [2, 28, 28], "datatype": "UINT8",
         "data": tiles(2).ravel().tolist()}]})
    sums = torch.tensor(response.json()["outputs"][0]["data"]).reshape(2, 62).sum(1)
    torch.testing.assert_close(sums, torch.ones(2))


def test_what_the_loaded_model_holds_is_frozen_out_of_the_collector(tiny_model_files):
    """A full garbage collection walks every tracked object: ~100 ms with torch and the model
    loaded, a stall of every request in flight. The app freezes what loading left behind."""
    gc.unfreeze()
    try:
        with TestClient(create_app(settings_for(tiny_model_files), ModelRegistry())) as fresh:
            assert fresh.get("/api/health/ready").status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
