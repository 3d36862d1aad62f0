"""The load test's own images: characters drawn with a pen, at several sizes and formats.

A load test that posts one cached file measures a cache, and one that posts noise cannot tell a
right answer from a wrong one. Drawing a few unambiguous characters (every stroke a person
would make, scaled with the canvas) gives realistic uploads whose label is known, so each
answer can be checked. The test suite draws its characters with the same helper.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

Strokes = list[list[tuple[float, float]]]

# Strokes a person would draw for characters that EMNIST byclass does not confuse with another
# class (no 0/O/o, 1/l/I, or letters whose lower case has the same shape).
STROKES: dict[str, Strokes] = {
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
    "L": [[(0.35, 0.15), (0.35, 0.85), (0.7, 0.85)]],
    "T": [[(0.2, 0.2), (0.8, 0.2)], [(0.5, 0.2), (0.5, 0.85)]],
    "X": [[(0.25, 0.2), (0.75, 0.85)], [(0.75, 0.2), (0.25, 0.85)]],
    "A": [[(0.2, 0.85), (0.5, 0.15), (0.8, 0.85)], [(0.33, 0.6), (0.67, 0.6)]],
    "E": [[(0.7, 0.15), (0.3, 0.15), (0.3, 0.85), (0.7, 0.85)], [(0.3, 0.5), (0.62, 0.5)]],
    "F": [[(0.7, 0.15), (0.3, 0.15), (0.3, 0.85)], [(0.3, 0.5), (0.62, 0.5)]],
    "H": [[(0.25, 0.15), (0.25, 0.85)], [(0.75, 0.15), (0.75, 0.85)], [(0.25, 0.5), (0.75, 0.5)]],
    "N": [[(0.25, 0.85), (0.25, 0.15), (0.75, 0.85), (0.75, 0.15)]],
    "4": [[(0.6, 0.85), (0.6, 0.15), (0.2, 0.6), (0.8, 0.6)]],
}
# The SLO profile's uploads: what a phone or a canvas sends, about 300-450 px square.
SLO_SIZES = (300, 350, 400, 450)
# The mix adds a small canvas and a large photo-sized image.
MIX_SIZES = (96, *SLO_SIZES, 800)
FORMATS = ("PNG", "JPEG", "WEBP")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# The test suite's pen on its 280 px canvas: keeps strokes as bold at any size.
PEN_FRACTION = 18 / 280


def draw_character(strokes: Strokes, size: int = 280, width: int = 18, ink: str = "black",
                   paper: str = "white", fmt: str = "PNG") -> bytes:
    """Encoded image of polyline strokes given in 0..1 coordinates (a person's drawing)."""
    image = Image.new("RGB", (size, size), paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * size, y * size) for x, y in stroke]
        pen.line(points, fill=ink, width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class Sample:
    """One upload and the label a correct model gives it."""

    label: str
    size: int
    fmt: str
    data: bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]

    @property
    def filename(self) -> str:
        return f"{self.label}-{self.size}.{self.fmt.lower()}"


def build(sizes: tuple[int, ...], formats: tuple[str, ...] = FORMATS) -> list[Sample]:
    """Every character at every size in every format."""
    return [
        Sample(label, size, fmt,
               draw_character(strokes, size, max(2, round(size * PEN_FRACTION)), fmt=fmt))
        for label, strokes in STROKES.items() for size in sizes for fmt in formats
    ]


class Corpus:
    """Samples drawn at random: built once per load-generator process, reused by every user."""

    def __init__(self, samples: list[Sample], seed: int | None = None) -> None:
        self.samples = samples
        self._random = random.Random(seed)

    def pick(self, count: int = 1) -> list[Sample]:
        return self._random.choices(self.samples, k=count)
