"""The training recipe end to end on a tiny synthetic data set: it must keep working, fast."""

import gzip
import json
import struct

import numpy as np
import torch

from model import train
from model.splits import load_pooled, stratified_split
from shared.model_loader import load_model


def write_split(directory, split, images, labels):
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        path = directory / f"emnist-byclass-{split}-{kind}-ubyte.gz"
        path.write_bytes(gzip.compress(header + array.tobytes()))


def fake_emnist(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "emnist"
    data.mkdir()
    codes = [*range(48, 58), *range(65, 91), *range(97, 123)]
    (data / "emnist-byclass-mapping.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(codes))
    )
    for split, n in (("train", 620), ("extra", 124), ("test", 124)):
        labels = np.arange(n, dtype=np.uint8) % 62
        if split == "extra":
            labels %= 32  # like the real extra split: a subset of the classes
        write_split(data, split, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), labels)
    return data


def test_recipe_trains_distils_and_exports(tmp_path):
    data = fake_emnist(tmp_path)
    out = tmp_path / "model"
    code = train.main([
        "--data", str(data), "--work", str(tmp_path / "work"), "--out", str(out),
        "--teachers", "1", "--teacher-epochs", "1", "--teacher-width", "4",
        "--epochs", "2", "--widths", "4,4,4", "--hidden", "8", "--device", "cpu",
    ])
    assert code == 0
    model = load_model(out / "emnist_edge.pt", out / "manifest.json")
    manifest = model.manifest
    assert manifest.training["teachers"] == ["teacher-100.pt"]
    assert manifest.training["splits"] == ["train", "extra"]
    assert manifest.metrics["test"]["n"] == 124
    # chosen on the validation split, which the manifest records; test measured at the end only
    assert manifest.training["selected_on"] == "validation"
    validation = manifest.training["validation"]
    assert validation["seed"] == 0 and validation["fraction"] == 0.1
    assert manifest.metrics["validation"]["n"] == validation["images"] == 70  # 10 % of each class
    assert manifest.training["epochs"] == 2
    for split in ("validation", "test"):
        assert set(manifest.metrics[split]) >= {"top1_ci95", "top3_ci95", "top1_case_insensitive"}
    assert manifest.onnx["opset"] == 17 and (out / manifest.onnx["file"]).is_file()
    assert manifest.onnx["max_abs_probability_diff_test"] <= 1e-5
    assert manifest.architecture == "EdgeNet(widths=(4, 4, 4), hidden=8)"
    history = json.loads((tmp_path / "work" / "student.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert "Most-confused pairs" in (out / "MODEL_CARD.md").read_text()


def test_training_on_train_alone_is_chosen_on_the_same_validation_images(tmp_path):
    """``--no-extra`` drops `extra` from what trains, not from what validates: a variant is
    scored on the images the shipped recipe was chosen on, and none of them trains it."""
    data = fake_emnist(tmp_path)
    pooled = train.load_data(data, torch.device("cpu"), ["train", "extra"], 0.1, 0)
    alone = train.load_data(data, torch.device("cpu"), ["train"], 0.1, 0)
    assert torch.equal(alone.val_x, pooled.val_x) and torch.equal(alone.val_w, pooled.val_w)
    assert len(pooled.train_x) == 620 + 124 - 70
    # what train-alone trains on: every train image outside validation
    held = stratified_split(load_pooled(data, train.POOLED)[1], 0.1, 0).validation
    assert len(alone.train_x) == 620 - (held < 620).sum()
    assert set(map(bytes, alone.train_x.numpy())) <= set(map(bytes, pooled.train_x.numpy()))
