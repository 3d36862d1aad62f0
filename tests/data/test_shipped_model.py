"""The shipped model against the data it was measured on (needs EMNIST_DIR)."""

import json
import subprocess
import sys

import pytest

from model.architectures import EdgeNet, count_parameters
from model.splits import VALIDATION_FRACTION, VALIDATION_SEED, named_split
from shared.config import MODEL_DIR, REPO_ROOT
from shared.manifest import Manifest, sha256_file

EDGECNN_TOP1 = 0.841


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.read(MODEL_DIR / "manifest.json")


def test_size_budget(manifest):
    assert manifest.parameters <= 170_000
    assert (MODEL_DIR / manifest.file).stat().st_size == manifest.file_bytes <= 1_000_000


def test_manifest_parameter_count_matches_the_architecture(manifest):
    assert manifest.architecture.startswith("EdgeNet(")
    assert count_parameters(EdgeNet()) == manifest.parameters


def test_chosen_on_validation_not_on_test(manifest):
    training = manifest.training
    assert training["selected_on"] == "validation"
    assert training["validation"] == {"from": ["train", "extra"], "stratified_by": "class",
                                      "fraction": VALIDATION_FRACTION, "seed": VALIDATION_SEED,
                                      "images": 16_021}
    assert manifest.metrics["validation"]["n"] == 16_021


def test_the_onnx_file_is_the_one_the_manifest_describes(manifest):
    entry = manifest.onnx
    path = MODEL_DIR / entry["file"]
    assert sha256_file(path) == entry["sha256"]
    assert path.stat().st_size == entry["file_bytes"] <= 1_000_000
    assert entry["opset"] == 17 and entry["input"]["shape"][0] == "batch"
    assert entry["max_abs_probability_diff_test"] <= 1e-5


def test_evaluate_cli_reproduces_the_manifest(emnist_dir, manifest):
    result = subprocess.run(
        [sys.executable, "-m", "model.evaluate", "--data", str(emnist_dir), "--split", "test"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["n"] == manifest.metrics["test"]["n"] == 11_634
    assert measured["top1"] == pytest.approx(manifest.metrics["test"]["top1"], abs=1e-4)
    assert measured["top3"] == pytest.approx(manifest.metrics["test"]["top3"], abs=1e-4)
    assert measured["top1_case_insensitive"] == pytest.approx(
        manifest.metrics["test"]["top1_case_insensitive"], abs=1e-4)
    assert measured["top1"] > EDGECNN_TOP1


def fidelity_on_validation(emnist_dir, *args: str) -> dict:
    """``python -m model.fidelity --split validation ARGS``'s report (its last line)."""
    result = subprocess.run(
        [sys.executable, "-m", "model.fidelity", "--data", str(emnist_dir),
         "--split", "validation", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_fidelity_cli_uploads_the_validation_split(emnist_dir):
    """Preprocessing choices are made on validation tiles: the tool uploads them on request."""
    report = fidelity_on_validation(emnist_dir, "--n", "40", "--photos", "5")
    assert {report[row]["n"] for row in ("raw_tiles", "png", "jpeg", "webp")} == {40}
    assert report["photo-third"]["n"] == report["photo-fifth"]["n"] == 5


def test_fidelity_cli_compares_a_constant_paired_on_the_same_uploads(emnist_dir):
    """``--vary``: each value on the same validation uploads, counted against the first."""
    report = fidelity_on_validation(emnist_dir, "--n", "30", "--vary", "REDUCED_SIDE=140,100")
    assert report["vary"] == "REDUCED_SIDE"
    for kind in ("png", "jpeg", "webp"):
        first, second = report[kind]
        assert (first["value"], second["value"]) == (140, 100)
        assert first["n"] == second["n"] == 30 and first["better"] == first["worse"] == 0
    assert [row["n"] for row in report["all"]] == [90, 90]


def test_a_split_by_name_is_rebuilt_only_where_a_manifest_records_it(emnist_dir, manifest):
    images, labels, weights = named_split(emnist_dir, "validation", manifest.training)
    assert len(images) == len(labels) == len(weights) == 16_021
    assert weights.mean() == pytest.approx(1.0)
    images, labels, weights = named_split(emnist_dir, "test", manifest.training)
    assert len(labels) == 11_634 and weights is None
    with pytest.raises(ValueError, match="no validation split"):
        named_split(emnist_dir, "validation", {})
