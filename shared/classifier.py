"""Images -> top-k labels with probabilities, in batched forward passes.

Results do not depend on how images are grouped: each image's probabilities come from the same
network whether it travels alone or in a batch (equal to float tolerance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shared.config import Settings
from shared.errors import EmnistEdgeError, InvalidParameter
from shared.model_loader import LoadedModel
from shared.preprocess import DecodeBudget, preprocess

DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "probability": self.probability,
            "top_k": [{"label": label, "probability": p} for label, p in self.top_k],
        }


def check_top_k(top_k: int, model: LoadedModel) -> int:
    if not 1 <= top_k <= len(model.labels):
        raise InvalidParameter(f"top_k must be between 1 and {len(model.labels)}, got {top_k}")
    return top_k


def top_k_arrays(
    tiles: np.ndarray, top_k: int, model: LoadedModel, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k probabilities (float32) and class indices, ``[N, k]`` each, in forward passes of
    ``batch_size``: arrays, so that a batch of a million needs no Python object per item."""
    values = np.empty((len(tiles), top_k), dtype=np.float32)
    indices = np.empty((len(tiles), top_k), dtype=np.int64)
    for start in range(0, len(tiles), batch_size):
        best = torch.topk(model.probabilities(tiles[start : start + batch_size]), top_k, dim=1)
        values[start : start + batch_size] = best.values.numpy()
        indices[start : start + batch_size] = best.indices.numpy()
    return values, indices


def classify_tiles(
    tiles: np.ndarray, top_k: int, model: LoadedModel, batch_size: int
) -> list[Prediction]:
    """Classify upright white-on-black uint8 tiles ``[N,28,28]``."""
    check_top_k(top_k, model)
    values, indices = top_k_arrays(tiles, top_k, model, batch_size)
    predictions: list[Prediction] = []
    for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
        ranked = tuple(
            (model.labels[i], float(p)) for i, p in zip(row_indices, row_values, strict=True)
        )
        predictions.append(Prediction(ranked[0][0], ranked[0][1], ranked))
    return predictions


def preprocess_all(
    images: Sequence[bytes], budgets: Sequence[DecodeBudget], max_pixels: int
) -> list[np.ndarray | EmnistEdgeError]:
    """Each image's tile, or the typed error that image raised (one bad image fails alone);
    each image is paid for from its request's budget (``budgets``, one per image)."""
    results: list[np.ndarray | EmnistEdgeError] = []
    for data, budget in zip(images, budgets, strict=True):
        try:
            results.append(preprocess(data, max_pixels=max_pixels, budget=budget))
        except EmnistEdgeError as error:
            results.append(error)
    return results


def classify_preprocessed(
    tiles: Sequence[np.ndarray | EmnistEdgeError], top_k: int, model: LoadedModel,
    batch_size: int,
) -> list[Prediction | EmnistEdgeError]:
    """Tiles (or the errors that replaced them) -> predictions in place, in one batched pass."""
    good = [tile for tile in tiles if isinstance(tile, np.ndarray)]
    predictions = iter(classify_tiles(np.stack(good), top_k, model, batch_size) if good else [])
    return [tile if isinstance(tile, EmnistEdgeError) else next(predictions) for tile in tiles]


def classify_images(
    images: Sequence[bytes], top_k: int, model: LoadedModel, settings: Settings
) -> list[Prediction | EmnistEdgeError]:
    """Encoded images -> a prediction or an error per image, in input order."""
    budgets = [DecodeBudget.for_request(settings) for _ in images]  # each image on its own
    tiles = preprocess_all(images, budgets, settings.max_image_pixels)
    return classify_preprocessed(tiles, top_k, model, settings.batch_size)
