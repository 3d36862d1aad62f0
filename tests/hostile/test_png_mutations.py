"""PNGs damaged at random, a few bytes at a time (seeded, so every run tries the same files):
``preprocess`` answers each with a tile or one of this package's errors, and the same answer as
when libspng inflates the pixels itself (``shared.png_decoder``: libdeflate's fast path must
change no verdict and no pixel, whatever is damaged: header, pixel chunks, chunks after them).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.preprocess import libspng_inflates_every_png
from tests.hostile.mutations import answers, verdict
from tests.payloads import PNG_7, encode, png_chunk, png_split_pixels, seven

MUTANTS = 400
BASES = {
    "rgb": PNG_7,
    "grey": encode(seven("L")),
    "rgba": encode(seven("RGBA")),
    "rgb-in-7-chunks": png_split_pixels(PNG_7, 7),
    "rgb-with-text-after": PNG_7[:-12] + png_chunk(b"tEXt", b"Comment\0hi") + PNG_7[-12:],
}


@pytest.mark.parametrize("base", BASES)
def test_a_damaged_png_gets_the_answer_libspng_alone_gave(base: str) -> None:
    verdicts = set()
    for _, now, before in answers(BASES[base], base, MUTANTS // len(BASES), 8,
                                  libspng_inflates_every_png):
        if isinstance(now, str) or isinstance(before, str):
            assert now == before
        else:
            assert np.array_equal(now, before)
        verdicts.add(verdict(now))
    assert verdicts == {"tile", "InvalidImage"}  # the damage both spares and breaks files
