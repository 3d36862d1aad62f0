"""Simple lossy WebPs damaged at random, a few bytes at a time (seeded, so every run tries the
same files): ``preprocess`` answers each with a tile or one of this package's errors, and the
same kind of answer as when Pillow decodes every WebP (``shared.webp_decoder``: libwebp's fast
path must change no verdict). A damaged frame may decode to other pixels in another libwebp
(the package's 1.3.2 against Pillow's 1.6.0): a lossy decoder makes what it can of damage, so
tiles are compared only where the frame is whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.preprocess import pillow_decodes_every_image
from tests.hostile.mutations import answers, verdict
from tests.payloads import WEBP_7, encode, seven

MUTANTS = 300
BASES = {"drawing": WEBP_7, "grey-drawing": encode(seven("L", size=150), "WEBP")}
FRAME = 20  # where the VP8 chunk's data starts


@pytest.mark.parametrize("base", BASES)
def test_a_damaged_webp_gets_the_answer_pillow_alone_gave(base: str) -> None:
    verdicts = set()
    for data, now, before in answers(BASES[base], base, MUTANTS // len(BASES), 4,
                                     pillow_decodes_every_image):
        verdicts.add(verdict(now))
        if isinstance(now, str) or isinstance(before, str):
            assert now == before
        elif data[FRAME:] == BASES[base][FRAME:]:  # the frame whole: the header was damaged
            assert np.abs(now.astype(np.int16) - before).mean() < 0.1
    assert "tile" in verdicts and "InvalidImage" in verdicts  # the mutations reach both
