"""Files damaged at random, a few bytes at a time, and what ``preprocess`` answers each: the
mutation tests of the fast decoders (``test_png_mutations``, ``test_webp_mutations``) hold each
fast path to the answers of the decoder it stands in for."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import numpy as np

from shared.errors import BlankImage, ImageTooLarge, InvalidImage
from shared.preprocess import DecodeBudget, preprocess


def mutated(data: bytes, rng: random.Random, keep: int) -> bytes:
    """``data`` with one to three bytes after its first ``keep`` replaced, or runs cut out."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(keep, len(damaged))
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


Answer = np.ndarray | str


def answers(base: bytes, seed: str, count: int, keep: int,
            baseline: Callable[[], AbstractContextManager[object]]
            ) -> Iterator[tuple[bytes, Answer, Answer]]:
    """``count`` mutants of ``base`` (seeded by ``seed``; the first ``keep`` bytes spared),
    each with its answer now and its answer inside ``baseline`` (the decoder stood in for)."""
    rng = random.Random(seed)
    for _ in range(count):
        data = mutated(base, rng, keep)
        now = answer(data)
        with baseline():
            yield data, now, answer(data)


def verdict(answer: Answer) -> str:
    """An error's name, or "tile"."""
    return answer if isinstance(answer, str) else "tile"
