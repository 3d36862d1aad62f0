"""The local server over real HTTP: uvicorn in a subprocess on a loopback port (conftest's
``http_server``), driven by a keep-alive client, as any other client would."""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import re
import time
from urllib.parse import urlsplit

import httpx2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import STROKES, draw_character, running_server

pytestmark = pytest.mark.integration

IMAGES = {label: draw_character(strokes) for label, strokes in STROKES.items()}
BLANK = draw_character([])
PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def client(http_server):
    with httpx2.Client(base_url=http_server.url, timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def model_name(client) -> str:
    return client.get("/api/model").json()["name"]


def check_result(result: dict, index: int, name: str | None, top_k: int = 3) -> None:
    assert (result["index"], result["name"]) == (index, name)
    assert len(result["top_k"]) == top_k and result["label"] == result["top_k"][0]["label"]
    assert 0 < result["probability"] <= 1


def test_health_ready_and_model(client):
    assert client.get("/api/health").json() == {"status": "alive"}
    assert client.get("/api/health/ready").status_code == 200
    model = client.get("/api/model").json()
    assert len(model["labels"]) == 62 and "file" not in model


def test_raw_body(client, http_server):
    response = client.post("/api/classify?include_processed=true", content=IMAGES["7"],
                           headers=PNG)
    assert response.status_code == 200
    result = response.json()["results"][0]
    check_result(result, 0, None)
    assert result["processed"].startswith("data:image/png;base64,")
    if http_server.real_model:
        assert result["label"] == "7"


def test_multipart_many_images_keep_their_order(client, http_server):
    order = ["T", "7", "X", "L"]
    response = client.post(
        "/api/classify",
        files=[(f"field{i}", (f"{label}.png", IMAGES[label], "image/png"))
               for i, label in enumerate(order)],
        data={"top_k": "4"},
    )
    assert response.status_code == 200
    results = response.json()["results"]
    for index, (label, result) in enumerate(zip(order, results, strict=True)):
        check_result(result, index, f"{label}.png", top_k=4)
        if http_server.real_model:
            assert result["label"] == label


def test_json_base64_and_data_urls(client):
    images = [base64.b64encode(IMAGES["L"]).decode(),
              "data:image/png;base64," + base64.b64encode(IMAGES["X"]).decode()]
    response = client.post("/api/classify", json={"images": images, "top_k": 2})
    assert response.status_code == 200
    for index, result in enumerate(response.json()["results"]):
        check_result(result, index, None, top_k=2)


def test_per_image_errors_inline_and_all_failed_status(client):
    mixed = client.post("/api/classify", files=[
        ("a", ("blank.png", BLANK, "image/png")), ("b", ("t.png", IMAGES["T"], "image/png"))])
    assert mixed.status_code == 200
    first, second = mixed.json()["results"]
    assert first["error"]["code"] == "blank_image" and "label" not in first
    check_result(second, 1, "t.png")
    failed = client.post("/api/classify", files=[
        ("a", ("notes.txt", b"hello", "text/plain")), ("b", ("blank.png", BLANK, "image/png"))])
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == "invalid_image"
    assert [r["error"]["code"] for r in failed.json()["results"]] == [
        "invalid_image", "blank_image"]


@pytest.mark.parametrize(
    ("query", "status"),
    [("top_k=1", 200), ("top_k=62", 200), ("top_k=0", 400), ("top_k=63", 400), ("top_k=x", 400)],
)
def test_top_k_bounds(client, query, status):
    response = client.post(f"/api/classify?{query}", content=IMAGES["X"], headers=PNG)
    assert response.status_code == status
    if status == 400:
        assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [(b"not an image", PNG, 400, "invalid_image"),
     (IMAGES["7"][:100], PNG, 400, "invalid_image"),
     (BLANK, PNG, 422, "blank_image"),
     (b"{oops", {"Content-Type": "application/json"}, 400, "invalid_request"),
     (b'{"images": ["%%%"]}', {"Content-Type": "application/json"}, 400, "invalid_request"),
     (IMAGES["7"], {"Content-Type": "text/plain"}, 415, "unsupported_media_type")],
    ids=["not-an-image", "truncated", "blank", "bad-json", "bad-base64", "wrong-type"],
)
def test_error_cases(client, content, headers, status, code):
    response = client.post("/api/classify", content=content, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text


def test_too_many_images(client, http_server):
    files = [("f", (f"{i}.png", IMAGES["L"], "image/png"))
             for i in range(http_server.max_images + 1)]
    response = client.post("/api/classify", files=files)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_limit_by_content_length_answers_before_the_body(http_server):
    """A declared length over the limit is refused at once: the body is never sent."""
    url = urlsplit(http_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest("POST", "/api/classify")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(10 * http_server.max_body_bytes))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    finally:
        connection.close()


def test_body_limit_while_streaming(client, http_server):
    def chunks():  # chunked transfer: no Content-Length to check up front
        sent = 0
        while sent <= http_server.max_body_bytes:
            yield b"\0" * 65536
            sent += 65536

    response = client.post("/api/classify", content=chunks(), headers=PNG)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_v2_round_trip(client, model_name):
    assert client.get("/api/v2/health/live").status_code == 200
    assert client.get("/api/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/api/v2/models/{model_name}/ready").status_code == 200
    metadata = client.get(f"/api/v2/models/{model_name}").json()
    [tensor] = metadata["inputs"]

    # The tile the classify route made is exactly what v2 takes.
    processed = client.post("/api/classify?include_processed=true", content=IMAGES["T"],
                            headers=PNG).json()["results"][0]
    png = base64.b64decode(processed["processed"].split(",", 1)[1])
    tile = np.asarray(Image.open(io.BytesIO(png)))
    shape = [1, *tensor["shape"][1:]]
    request = {"id": "round-trip", "inputs": [{"name": tensor["name"], "shape": shape,
                                               "datatype": tensor["datatype"],
                                               "data": tile.ravel().tolist()}]}
    response = client.post(f"/api/v2/models/{model_name}/infer", json=request)
    assert response.status_code == 200
    answer = response.json()
    assert answer["id"] == "round-trip" and answer["model_name"] == model_name
    [output] = answer["outputs"]
    assert output["shape"] == [1, 62] and math.isclose(sum(output["data"]), 1, rel_tol=1e-4)
    labels = client.get("/api/model").json()["labels"]
    best = int(np.argmax(output["data"]))
    assert labels[best] == processed["label"]
    assert output["data"][best] == pytest.approx(processed["probability"], abs=1e-5)


def test_v2_errors(client, model_name):
    missing = client.get("/api/v2/models/nope")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    bad = client.post(f"/api/v2/models/{model_name}/infer", json={"inputs": [
        {"name": "input", "shape": [2, 28, 28], "datatype": "UINT8", "data": [0] * 784}]})
    assert bad.status_code == 400 and "1568" in bad.json()["error"]


def test_docs_and_page(client):
    assert "/api/classify" in client.get("/api/openapi.json").json()["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "://" not in docs.text.replace(client.base_url.host, "")  # offline: no CDN
    for asset in re.findall(r"/api/docs/assets/[\w.-]+", docs.text):
        assert client.get(asset).status_code == 200, asset
    for path in ("/", "/api/"):
        assert 'id="canvas"' in client.get(path).text


def test_several_workers_answer_keep_alive_requests_without_nagle_delays(
    tiny_model_files, tmp_path
):
    """uvicorn's shared socket for several workers loses TCP_NODELAY (uvicorn issue 3149):
    without serve's fix every keep-alive response here takes ~40 ms, not ~1 ms."""
    latencies = []
    with (
        running_server(tiny_model_files, tmp_path, "--workers", "2", torch_threads="1") as url,
        httpx2.Client(base_url=url) as session,
    ):
        session.get("/api/health")
        for _ in range(15):
            started = time.perf_counter()
            assert session.get("/api/health").status_code == 200
            latencies.append(time.perf_counter() - started)
    assert sorted(latencies)[len(latencies) // 2] < 0.02


def test_metrics_are_prometheus_text(client):
    """The local server's /metrics parses with Prometheus's own parser and carries the serving
    instruments, the model's identity among the resource attributes (target_info)."""
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/api/classify", content=IMAGES["7"], headers=PNG)
    client.post("/api/classify", content=b"not an image", headers=PNG)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name in ("emnist_edge_http_duration_milliseconds", "emnist_edge_http_errors",
                 "emnist_edge_stage_duration_milliseconds", "emnist_edge_prediction_confidence",
                 "emnist_edge_dynamic_batch_size"):
        assert name in families, sorted(families)
    (info,) = families["target_info"].samples
    assert info.labels["service_name"] == "emnist-edge"
    assert len(info.labels["emnist_edge_model_sha256"]) == 64
    codes = {s.labels.get("error_type") for s in families["emnist_edge_http_errors"].samples}
    assert "invalid_image" in codes
