"""PNGs damaged at random, a few bytes at a time (seeded, so every run tries the same files):
``preprocess`` answers each with a tile or one of this package's errors, and the same answer as
when libspng inflates the pixels itself (``shared.png_decoder``: libdeflate's fast path must
change no verdict and no pixel, whatever is damaged: header, pixel chunks, chunks after them).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.preprocess import libspng_inflates_every_png
from shared.errors import BlankImage, ImageTooLarge, InvalidImage
from shared.preprocess import DecodeBudget, preprocess
from tests.payloads import PNG_7, encode, png_chunk, png_split_pixels, seven

MUTANTS = 400
BASES = {
    "rgb": PNG_7,
    "grey": encode(seven("L")),
    "rgba": encode(seven("RGBA")),
    "rgb-in-7-chunks": png_split_pixels(PNG_7, 7),
    "rgb-with-text-after": PNG_7[:-12] + png_chunk(b"tEXt", b"Comment\0hi") + PNG_7[-12:],
}


def mutated(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to three bytes after the signature replaced, or runs cut out."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(8, len(damaged))
        if rng.random() < 0.7:
            damaged[at] = rng.randrange(256)
        else:
            del damaged[at : at + rng.randint(1, 30)]
    return bytes(damaged)


def answer(data: bytes) -> np.ndarray | str:
    """The tile, or the name of this package's error; anything else escapes and fails."""
    try:
        return preprocess(data, max_pixels=10**7, budget=DecodeBudget(10**9, 10**9))
    except (InvalidImage, BlankImage, ImageTooLarge) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("base", BASES)
def test_a_damaged_png_gets_the_answer_libspng_alone_gave(base: str) -> None:
    rng = random.Random(base)
    verdicts = set()
    for _ in range(MUTANTS // len(BASES)):
        data = mutated(BASES[base], rng)
        now = answer(data)
        with libspng_inflates_every_png():
            before = answer(data)
        if isinstance(now, str) or isinstance(before, str):
            assert now == before
        else:
            assert np.array_equal(now, before)
        verdicts.add(now if isinstance(now, str) else "tile")
    assert verdicts == {"tile", "InvalidImage"}  # the damage both spares and breaks files
