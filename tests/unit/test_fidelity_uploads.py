"""The uploads ``python -m model.fidelity`` makes of EMNIST tiles: each format opens as itself
at the sizes the docstring says, and a phone photo's character comes back through
preprocessing as the same character uploaded on its own does. And its paired comparison of a
preprocessing constant (``--vary``)."""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
import pytest
from PIL import Image

from model.fidelity import (
    PHOTO_FRACTIONS,
    PHOTO_SIZE,
    as_photo,
    as_upload,
    paired,
    paired_change,
    variation,
)
from shared import preprocess as preprocess_module
from shared.config import Settings
from shared.preprocess import DecodeBudget, preprocess


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """An upright white-on-black 28x28 'L': a stem and a foot."""
    tile = np.zeros((28, 28), np.uint8)
    tile[4:24, 9:13] = 255
    tile[20:24, 9:20] = 255
    return tile


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_upload_is_its_format_at_290_to_670_px(tile: np.ndarray, fmt: str) -> None:
    image = Image.open(io.BytesIO(as_upload(tile, np.random.default_rng(0), fmt)))
    assert image.format == fmt and min(image.size) >= 290 and max(image.size) <= 672


@pytest.mark.parametrize("fraction", PHOTO_FRACTIONS.values(), ids=PHOTO_FRACTIONS.keys())
def test_a_photo_comes_back_as_its_tile(tile: np.ndarray, fraction: float) -> None:
    data = as_photo(tile, np.random.default_rng(1), fraction)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == PHOTO_SIZE
    alone = tile_of(as_upload(tile, np.random.default_rng(2), "PNG"))
    assert np.corrcoef(tile_of(data).ravel(), alone.ravel())[0, 1] > 0.98


def tile_of(data: bytes) -> np.ndarray:
    return preprocess(data, max_pixels=10**7, budget=DecodeBudget(10**9, 10**9))


# --- --vary: a paired comparison of a preprocessing constant ---------------------------------

class _InkReader:
    """A stand-in model: class 1 for a tile with any ink, class 0 for a blank one."""

    def probabilities(self, tiles: np.ndarray) -> np.ndarray:
        inked = tiles.reshape(len(tiles), -1).any(axis=1)
        return np.stack([~inked, inked], axis=1).astype(np.float32)


def test_a_paired_comparison_sets_each_value_in_turn_and_counts_against_the_first(
        tile: np.ndarray) -> None:
    uploads = [as_upload(tile, np.random.default_rng(seed), "PNG") for seed in range(3)]
    labels = np.ones(3, np.intp)
    rows = paired(uploads, labels, _InkReader(), Settings.from_env(), "MIN_INK", [0.1, 2.0])
    # No ink reaches twice the paper's range: every upload is blank, so read wrong.
    assert [(row["top1"], row["better"], row["worse"]) for row in rows] == [(1, 0, 0), (0, 0, 3)]
    assert all(row["n"] == 3 and row["cpu_ms"] > 0 for row in rows)
    assert preprocess_module.MIN_INK == 0.1  # put back


def test_a_paired_change_and_its_interval() -> None:
    change, interval = paired_change(better=3, worse=1, n=100)
    assert change == pytest.approx(0.02)
    assert interval == pytest.approx(1.96 * math.sqrt((0.04 - 0.02**2) / 99))
    assert paired_change(0, 0, 50) == (0.0, 0.0)


@pytest.mark.parametrize(("text", "error"), [
    ("NOPE=1,2", "not a numeric constant"),
    ("FORMATS=1,2", "not a numeric constant"),
    ("REDUCED_SIDE=1.5,2", "are ints"),
    ("REDUCED_SIDE=100", "at least two values"),
])
def test_what_can_be_varied(text: str, error: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        variation(text)
    assert variation("BBOX_THRESHOLD=0.05,0.04") == ("BBOX_THRESHOLD", [0.05, 0.04])
