"""The shipped model against the data it was measured on (needs EMNIST_DIR)."""

import json
import subprocess
import sys

import pytest

from model.architectures import EdgeNet, count_parameters
from shared.config import MODEL_DIR, REPO_ROOT
from shared.manifest import Manifest

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


def test_evaluate_cli_reproduces_the_manifest(emnist_dir, manifest):
    result = subprocess.run(
        [sys.executable, "-m", "model.evaluate", "--data", str(emnist_dir), "--split", "test"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["n"] == manifest.metrics["test"]["n"] == 11_634
    assert measured["top1"] == pytest.approx(manifest.metrics["test"]["top1"], abs=1e-4)
    assert measured["top3"] == pytest.approx(manifest.metrics["test"]["top3"], abs=1e-4)
    assert measured["top1"] > EDGECNN_TOP1
