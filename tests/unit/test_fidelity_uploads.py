"""The uploads ``python -m model.fidelity`` makes of EMNIST tiles: each format opens as itself
at the sizes the docstring says, and a phone photo's character comes back through
preprocessing as the same character uploaded on its own does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.fidelity import PHOTO_FRACTIONS, PHOTO_SIZE, as_photo, as_upload
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
