import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from model.architectures import EdgeNet
from model.export import write_model
from shared import model_loader
from shared.errors import ModelLoadError
from shared.manifest import Manifest

LABELS = [chr(c) for c in range(ord("A"), ord("A") + 62)]


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model_path, manifest_path, _ = write_model(EdgeNet((2, 2, 2), 4), tmp_path, LABELS)
    return model_path, manifest_path


def edit_manifest(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_loads_and_exposes_manifest(tiny):
    model = model_loader.load_model(*tiny)
    assert model.labels == tuple(LABELS)
    probs = model.probabilities(np.zeros((3, 28, 28), dtype=np.uint8))
    assert probs.shape == (3, 62)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_missing_model_file(tiny):
    tiny[0].unlink()
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_loader.load_model(*tiny)


def test_missing_manifest(tiny):
    tiny[1].unlink()
    with pytest.raises(ModelLoadError, match=r"manifest .* does not exist"):
        model_loader.load_model(*tiny)


def test_manifest_not_json(tiny):
    tiny[1].write_text("{not json")
    with pytest.raises(ModelLoadError, match="not readable JSON"):
        model_loader.load_model(*tiny)


def test_sha256_mismatch(tiny):
    with open(tiny[0], "ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ModelLoadError, match="sha256"):
        model_loader.load_model(*tiny)


def test_corrupt_file_with_matching_hash(tiny):
    from shared.manifest import sha256_file

    tiny[0].write_bytes(b"this is not a zip archive")
    edit_manifest(tiny[1], sha256=sha256_file(tiny[0]))
    with pytest.raises(ModelLoadError, match="not a loadable TorchScript"):
        model_loader.load_model(*tiny)


def test_label_count_must_match_output(tiny):
    edit_manifest(tiny[1], labels=LABELS[:10])
    with pytest.raises(ModelLoadError, match="10 labels"):
        model_loader.load_model(*tiny)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": {"shape": [3, 32, 32]}}, "input shape"),
        ({"input": {"orientation": "sideways"}}, "orientation"),
        ({"input": {"ink": "blue"}}, "ink"),
        ({"input": {"std": 0}}, "positive"),
        ({"labels": ["a", "a"]}, "distinct"),
        ({"format_version": 99}, "format version 99"),
    ],
)
def test_inconsistent_manifest(tiny, changes, message):
    edit_manifest(tiny[1], **changes)
    with pytest.raises(ModelLoadError, match=message):
        model_loader.load_model(*tiny)


def test_missing_manifest_field(tiny):
    data = json.loads(tiny[1].read_text())
    del data["labels"]
    tiny[1].write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="missing or has unexpected fields"):
        model_loader.load_model(*tiny)


def test_input_conversion_follows_the_manifest(tiny):
    model = model_loader.load_model(*tiny)
    tile = np.zeros((1, 28, 28), dtype=np.uint8)
    tile[0, 0, 5] = 255  # a pixel in the top row
    x = model.to_input(tile)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 0, 5] == 1.0 and x[0, 0, 5, 0] == -1.0
    raw = Manifest.from_dict({**json.loads(tiny[1].read_text())})
    spec = raw.input.__class__(**{**raw.input.__dict__, "orientation": "emnist_raw",
                                  "ink": "black_on_white"})
    flipped = dataclasses.replace(model, manifest=raw.__class__(**{**raw.__dict__,
                                                                 "input": spec}))
    y = flipped.to_input(tile)
    assert y[0, 0, 5, 0] == -1.0 and y[0, 0, 0, 5] == 1.0  # transposed, then inverted


def test_two_tiles_or_more_take_the_network_optimised_for_inference(tiny):
    """The batched network holds its convolutions' weights packed for oneDNN (the saved one
    does not); a single tile runs the saved one, two or more the batched one."""
    model = model_loader.load_model(*tiny)
    assert "prim::ConstantMKLDNNTensor" in str(model.batched.graph)
    assert "MKLDNN" not in str(model.module.graph)

    def refuses(x):
        raise AssertionError("the batched network ran")

    single_only = dataclasses.replace(model, batched=refuses)
    single_only.probabilities(np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(AssertionError, match="the batched network ran"):
        single_only.probabilities(np.zeros((2, 28, 28), dtype=np.uint8))


def test_registry_loads_once_across_threads(tiny, monkeypatch):
    model_path, manifest_path = tiny
    spec = model_loader.ModelSpec(model_path, manifest_path, threads=1)
    calls = []
    real = model_loader.load_model
    monkeypatch.setattr(model_loader, "load_model", lambda *a: calls.append(a) or real(*a))
    torch.set_num_threads(2)
    registry = model_loader.ModelRegistry()
    assert registry.loaded(spec) is None
    results = []
    threads = [threading.Thread(target=lambda: results.append(registry.get(spec)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert registry.loaded(spec) is results[0]
    results[0].probabilities(np.zeros((1, 28, 28), dtype=np.uint8))
    assert torch.get_num_threads() == 1


def test_registry_keys_models_by_spec(tiny, tmp_path):
    """Two specs, two models: a registry never serves one path's model for another's."""
    model_path, manifest_path = tiny
    torch.manual_seed(1)
    other = write_model(EdgeNet((2, 2, 2), 4), tmp_path / "other", LABELS)[:2]
    registry = model_loader.ModelRegistry()
    first = registry.get(model_loader.ModelSpec(model_path, manifest_path))
    second = registry.get(model_loader.ModelSpec(*other))
    assert first is not second
    assert second.path == other[0] and first.path == model_path


def test_spec_of_settings(settings):
    spec = model_loader.ModelSpec.of(settings)
    assert (spec.model_path, spec.manifest_path) == (settings.model_path, settings.manifest_path)
    assert spec.threads == max(1, settings.torch_threads)
