"""Uploads -> one JSON-ready result per image, with the time each stage took.

All images that preprocess cleanly go through the model in one batched forward pass; an image
that fails (not an image, too large, blank) gets its error in its own slot, so one bad upload
never costs the others their answer.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from shared.classifier import classify_preprocessed, preprocess_all
from shared.config import Settings
from shared.errors import EmnistEdgeError
from shared.model_loader import LoadedModel
from shared.preprocess import DecodeBudget


@dataclass(frozen=True)
class Upload:
    """One image of a request: its bytes, and the file name the client gave it (if any)."""

    name: str | None
    data: bytes


@dataclass(frozen=True)
class ClassifyOutcome:
    results: list[dict[str, Any]]
    # Each image's error, None where it succeeded.
    errors: list[EmnistEdgeError | None]
    preprocess_ms: float
    inference_ms: float

    @property
    def failure(self) -> EmnistEdgeError | None:
        """The first image's error when no image succeeded (it decides the response status)."""
        return self.errors[0] if self.errors and None not in self.errors else None

    def split(self, sizes: Sequence[int]) -> list[ClassifyOutcome]:
        """Consecutive shares of ``sizes`` images each, indexed from 0 again: the answers of
        several requests that were classified together (see ``shared.dynamic_batcher``)."""
        shares = []
        start = 0
        for size in sizes:
            results = [{**result, "index": index} for index, result
                       in enumerate(self.results[start : start + size])]
            shares.append(ClassifyOutcome(results, self.errors[start : start + size],
                                  self.preprocess_ms, self.inference_ms))
            start += size
        return shares


def elapsed_ms(since_ns: int) -> float:
    return round((time.perf_counter_ns() - since_ns) / 1e6, 3)


def png_data_url(tile: np.ndarray) -> str:
    """A uint8 tile as a ``data:image/png;base64,...`` URL (what a page can show directly)."""
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def classify_uploads(
    uploads: Sequence[Upload],
    budgets: Sequence[DecodeBudget],
    top_k: int,
    include_processed: bool,
    model: LoadedModel,
    settings: Settings,
) -> ClassifyOutcome:
    """Preprocess every upload (each paid from its request's budget: ``budgets``, one per
    upload), classify the good ones in one batch, keep request order."""
    started = time.perf_counter_ns()
    tiles = preprocess_all([upload.data for upload in uploads], budgets,
                           settings.max_image_pixels)
    preprocess_ms = elapsed_ms(started)

    started = time.perf_counter_ns()
    predictions = classify_preprocessed(tiles, top_k, model, settings.batch_size)
    inference_ms = elapsed_ms(started)

    results: list[dict[str, Any]] = []
    for index, (upload, tile, prediction) in enumerate(
        zip(uploads, tiles, predictions, strict=True)
    ):
        result: dict[str, Any] = {"index": index, "name": upload.name}
        if isinstance(prediction, EmnistEdgeError):
            result["error"] = prediction.to_dict()
        else:
            result.update(prediction.to_dict())
            if include_processed:
                result["processed"] = png_data_url(tile)
        results.append(result)
    errors = [p if isinstance(p, EmnistEdgeError) else None for p in predictions]
    return ClassifyOutcome(results, errors, preprocess_ms, inference_ms)
