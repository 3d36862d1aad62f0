import numpy as np
import pytest

from shared.classifier import classify_images, classify_tiles
from shared.errors import BlankImage, InvalidImage, InvalidParameter
from tests.conftest import STROKES, draw_character


@pytest.fixture(scope="module")
def tiles():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 28, 28), dtype=np.uint8)


def test_batched_equals_one_by_one(shipped_model, tiles):
    together = classify_tiles(tiles, top_k=5, model=shipped_model, batch_size=16)
    alone = [classify_tiles(t[None], top_k=5, model=shipped_model, batch_size=1)[0]
             for t in tiles]
    for a, b in zip(together, alone, strict=True):
        assert [label for label, _ in a.top_k] == [label for label, _ in b.top_k]
        np.testing.assert_allclose([p for _, p in a.top_k], [p for _, p in b.top_k], atol=1e-5)


def test_probabilities_are_sorted_and_bounded(shipped_model, tiles):
    for prediction in classify_tiles(tiles, top_k=62, model=shipped_model, batch_size=256):
        probs = [p for _, p in prediction.top_k]
        assert probs == sorted(probs, reverse=True)
        assert prediction.probability == probs[0]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert len({label for label, _ in prediction.top_k}) == 62


@pytest.mark.parametrize("top_k", [0, 63, -1])
def test_top_k_out_of_range(shipped_model, tiles, top_k):
    with pytest.raises(InvalidParameter, match="top_k must be between 1 and 62"):
        classify_tiles(tiles, top_k=top_k, model=shipped_model, batch_size=256)


def test_drawn_characters_are_recognised(shipped_model, settings):
    images = [draw_character(strokes) for strokes in STROKES.values()]
    results = classify_images(images, 3, shipped_model, settings)
    for expected, result in zip(STROKES, results, strict=True):
        assert expected in [label for label, _ in result.top_k], (expected, result)


def test_one_bad_image_fails_alone(shipped_model, settings):
    good = draw_character(STROKES["7"])
    blank = draw_character([])
    results = classify_images([good, b"not an image", blank, good], 3, shipped_model, settings)
    assert isinstance(results[1], InvalidImage)
    assert isinstance(results[2], BlankImage)
    assert results[0].top_k == results[3].top_k


def test_to_dict_shape(shipped_model, tiles):
    as_dict = classify_tiles(tiles[:1], top_k=2, model=shipped_model, batch_size=256)[0].to_dict()
    assert set(as_dict) == {"label", "probability", "top_k"}
    assert [set(item) for item in as_dict["top_k"]] == [{"label", "probability"}] * 2
    assert isinstance(as_dict["probability"], float)
