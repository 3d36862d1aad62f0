"""Simple lossy WebPs damaged at random, a few bytes at a time (seeded, so every run tries the
same files): ``preprocess`` answers each with a tile or one of this package's errors, and the
same kind of answer as when Pillow decodes every WebP (``shared.webp_decoder``: libwebp's fast
path must change no verdict). A damaged frame may decode to other pixels in another libwebp
(the package's 1.3.2 against Pillow's 1.6.0): a lossy decoder makes what it can of damage, so
tiles are compared only where the frame is whole.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from shared import preprocess as pre
from shared.errors import BlankImage, ImageTooLarge, InvalidImage
from shared.preprocess import DecodeBudget, preprocess
from tests.payloads import WEBP_7, encode, seven

MUTANTS = 300
BASES = {"drawing": WEBP_7, "grey-drawing": encode(seven("L", size=150), "WEBP")}
FRAME = 20  # where the VP8 chunk's data starts


def mutated(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to three bytes after ``RIFF`` replaced, or runs cut out."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(4, len(damaged))
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
def test_a_damaged_webp_gets_the_answer_pillow_alone_gave(base: str) -> None:
    rng = random.Random(base)
    verdicts = set()
    for _ in range(MUTANTS // len(BASES)):
        data = mutated(BASES[base], rng)
        now = answer(data)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pre, "decode_webp", lambda *a: None)
            before = answer(data)
        verdicts.add(now if isinstance(now, str) else "tile")
        if isinstance(now, str) or isinstance(before, str):
            assert now == before
        elif data[FRAME:] == BASES[base][FRAME:]:  # the frame whole: the header was damaged
            assert np.abs(now.astype(np.int16) - before).mean() < 0.1
    assert "tile" in verdicts and "InvalidImage" in verdicts  # the mutations reach both
