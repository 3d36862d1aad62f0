"""The ONNX export (``python -m model.export --onnx``): opset, free batch dimension, parity with
the TorchScript file, the manifest entry; and the manifest staying readable without one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from model.architectures import EdgeNet
from model.export import (
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    PARITY_TOLERANCE,
    add_onnx,
    onnx_parity,
    onnx_probabilities,
    onnx_session,
    write_model,
)
from shared.manifest import Manifest, sha256_file
from shared.model_loader import load_model

onnx = pytest.importorskip("onnx", reason="onnx is a development requirement (requirements-dev)")
pytest.importorskip("onnxruntime", reason="onnxruntime is a development requirement")

LABELS = [*"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random EdgeNet written as TorchScript, then as ONNX beside it."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("onnx")
    model_path, manifest_path, _ = write_model(EdgeNet((4, 8, 8), 16), folder, LABELS)
    served = load_model(model_path, manifest_path)
    tiles = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    manifest = add_onnx(model_path, served.manifest, served, tiles, served.probabilities(tiles))
    manifest_path.write_text(manifest.to_json())
    return served, folder / ONNX_FILE, manifest, manifest_path


def test_onnx_file_is_valid_with_the_stated_opset_and_a_free_batch(exported):
    _, path, manifest, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == ONNX_OPSET
    (given,) = proto.graph.input
    (out,) = proto.graph.output
    assert given.name == ONNX_INPUT and out.name == ONNX_OUTPUT
    assert given.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in given.type.tensor_type.shape.dim[1:]] == [1, 28, 28]
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    # weights are initializers, not Constant nodes (what quantisers and converters expect)
    assert proto.graph.initializer and not [n for n in proto.graph.node if n.op_type == "Constant"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["labels"] == "".join(LABELS) and meta["torchscript_sha256"] == manifest.sha256


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_onnx_matches_torchscript_at_any_batch_size(exported, batch):
    served, path, _, _ = exported
    tiles = np.random.default_rng(batch).integers(0, 256, (batch, 28, 28), dtype=np.uint8)
    got = onnx_probabilities(onnx_session(path), served, tiles)
    assert got.shape == (batch, 62)
    assert (got - served.probabilities(tiles)).abs().max().item() <= PARITY_TOLERANCE


def test_manifest_describes_the_onnx_file(exported):
    served, path, manifest, manifest_path = exported
    entry = Manifest.read(manifest_path).onnx
    assert entry == manifest.onnx
    assert entry["file"] == ONNX_FILE and entry["opset"] == ONNX_OPSET
    assert entry["sha256"] == sha256_file(path) and entry["file_bytes"] == path.stat().st_size
    assert entry["input"] == {"name": ONNX_INPUT, "shape": ["batch", 1, 28, 28],
                              "dtype": "float32"}
    assert entry["output"]["name"] == ONNX_OUTPUT and entry["output"]["shape"] == ["batch", 62]
    assert 0 <= entry["max_abs_probability_diff_test"] <= PARITY_TOLERANCE
    # the service loads the manifest as before; clients see the entry without the file name
    assert load_model(served.path, manifest_path).manifest.onnx == entry
    assert "file" not in Manifest.read(manifest_path).public()["onnx"]


def test_a_manifest_without_onnx_still_loads(exported, tmp_path):
    served, _, _, manifest_path = exported
    data = json.loads(manifest_path.read_text())
    del data["onnx"]
    old = tmp_path / "manifest.json"
    old.write_text(json.dumps(data))
    assert load_model(served.path, old).manifest.onnx == {}


def test_parity_failure_writes_nothing(exported, tmp_path, monkeypatch):
    served, _, _, _ = exported
    model_path = tmp_path / served.path.name
    model_path.write_bytes(served.path.read_bytes())
    tiles = np.zeros((4, 28, 28), dtype=np.uint8)
    wrong = served.probabilities(tiles) + 1e-3
    with pytest.raises(RuntimeError, match="differ from TorchScript"):
        add_onnx(model_path, dataclasses.replace(served.manifest), served, tiles, wrong)
    assert not (tmp_path / ONNX_FILE).exists()


@pytest.mark.data
def test_shipped_onnx_matches_torchscript_on_test_images(emnist_dir, shipped_model):
    """A seeded sample of 1,000 `test` images (``python -m model.benchmark`` checks all)."""
    from shared.config import MODEL_DIR
    from shared.emnist import load_split, upright

    entry = shipped_model.manifest.onnx
    if not entry:
        pytest.skip("the shipped model has no ONNX file (python -m model.export --onnx)")
    path = MODEL_DIR / entry["file"]
    assert sha256_file(path) == entry["sha256"]
    images, _ = load_split(emnist_dir, "test")
    chosen = np.random.default_rng(0).choice(len(images), 1000, replace=False)
    assert onnx_parity(path, shipped_model, upright(images[np.sort(chosen)])) <= PARITY_TOLERANCE
