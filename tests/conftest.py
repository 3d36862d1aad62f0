"""Fixtures shared by the test layers: the EMNIST directory, a tiny model, drawn characters."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from shared.config import MODEL_DIR


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    raw = os.environ.get("EMNIST_DIR")
    if not raw or not Path(raw).is_dir():
        pytest.skip("EMNIST data not available: set EMNIST_DIR to the folder of the gzip IDX files")
    return Path(raw)


@pytest.fixture(scope="session")
def shipped_model():
    from shared.model_loader import load_model

    return load_model(MODEL_DIR / "emnist_edge.pt", MODEL_DIR / "manifest.json")


def draw_character(strokes: list[list[tuple[float, float]]], size: int = 280, width: int = 18,
                   ink: str = "black", paper: str = "white", fmt: str = "PNG") -> bytes:
    """Encoded image of polyline strokes given in 0..1 coordinates (a person's drawing)."""
    image = Image.new("RGB", (size, size), paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * size, y * size) for x, y in stroke]
        pen.line(points, fill=ink, width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# Strokes a person would draw for a few unambiguous characters.
STROKES = {
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
    "L": [[(0.35, 0.15), (0.35, 0.85), (0.7, 0.85)]],
    "T": [[(0.2, 0.2), (0.8, 0.2)], [(0.5, 0.2), (0.5, 0.85)]],
    "X": [[(0.25, 0.2), (0.75, 0.85)], [(0.75, 0.2), (0.25, 0.85)]],
}
