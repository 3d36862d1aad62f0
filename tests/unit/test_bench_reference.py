"""The benchmark's comparisons: the reference server's naive tile, its rows in ``make bench``'s
report, and the preprocessing breakdown's replay (it must time what ``preprocess`` does)."""

from __future__ import annotations

from unittest import mock

import numpy as np

from bench import preprocess as breakdown
from bench import reference, report
from loadtests.corpus import STROKES, draw_character
from shared.preprocess import DecodeBudget, preprocess


def test_reference_tile_is_the_ink_cropped_square_and_resized() -> None:
    tile = reference.naive_tile(draw_character(STROKES["L"], 300, 20))
    assert tile.shape == (28, 28) and tile.dtype == np.float32
    assert tile.min() >= 0.0 and tile.max() <= 1.0
    rows = np.flatnonzero(tile.max(axis=1) > 0.5)
    assert rows[0] <= 1 and rows[-1] >= 26  # the L's height fills the tile: no border


def http(p50: float, rps: float) -> dict[str, float]:
    return {"clients": 1, "requests": 100, "p50_ms": p50, "p95_ms": p50, "p99_ms": 2 * p50,
            "rps": rps}


def test_report_sets_ours_against_the_reference_per_core() -> None:
    figures = {str(c): http(3.0 + c, 300.0 + c) for c in (1, 16, 64)}
    bare = {str(c): http(2.0 + c, 200.0 + c) for c in (1, 16, 64)}
    fake = {
        "machine": {"cpus": 2},
        "model_only": {"batch": {"emnist-edge": 2.0, "EdgeCNN": 1.0}},
        "http": {"in-process classify": {"p50_ms": 1.0}, "reference": bare,
                 "modes": {"on": figures, "off": figures},
                 "server RSS after load (MiB)": {"on": 500.0, "off": 500.0, "reference": 400.0}},
        "batch": None,
        "cold_start": {"first prediction (s)": 1.0, "import torch (s)": 0.5,
                       "server RSS ready (MiB)": 400.0},
    }
    lines = report.table(fake)
    start = next(i for i, line in enumerate(lines) if "against the reference" in line)
    section = "\n".join(lines[start : start + 13])
    assert "emnist-edge" in section and "reference" in section
    per_core = next(line for line in lines[start:] if "64 clients: req/s per core" in line)
    assert per_core.split()[-3:] == ["182.00", "132.00", "1.38x"]


def test_breakdown_replays_preprocess() -> None:
    data = breakdown.drawing(280, "RGBA")
    tile, spent = breakdown.staged(data, breakdown.time.thread_time)
    budget = DecodeBudget(10**9, 10**9)
    assert np.array_equal(tile, preprocess(data, max_pixels=10**8, budget=budget))
    assert set(spent) == set(breakdown.STAGES) and spent["again"] == 0.0
    assert all(seconds >= 0 for seconds in spent.values())


def test_the_baselines_decode_pngs_as_before(spng_calls) -> None:
    """The same-run baselines are real: under Pillow's, ``preprocess`` never calls libspng;
    under libspng's, libspng gets the upload as it came, not its pixels inflated beforehand."""
    data = breakdown.drawing(120)
    with breakdown.pillow_decodes_every_image():
        breakdown.served_tile(data)
    assert spng_calls == []
    with breakdown.libspng_inflates_every_png():
        breakdown.served_tile(data)
    assert spng_calls == [(data, "RGB")]
    breakdown.served_tile(data)
    assert len(spng_calls) == 2 and spng_calls[1][0] != data


def test_the_corpus_is_timed_by_format() -> None:
    corpus = breakdown.measure_corpus(1)
    assert set(corpus) == {"PNG", "JPEG", "WEBP"}
    assert all(row["uploads"] == 40 and row["pillow_decoder_ms"] > 0 and row["libspng_zlib_ms"] > 0
               and row["reference_ms"] > 0 for row in corpus.values())


def test_the_reference_is_timed_beside_the_pipeline() -> None:
    """Each input's row carries the reference server's naive tile, timed in turn with the
    others, and the ratio of the pipeline's total to it."""
    data = breakdown.drawing(120)
    with mock.patch.object(breakdown, "inputs", return_value={"drawing": data}):
        row = breakdown.measure(2)["drawing"]
    assert row["reference_ms"] > 0 and row["preprocess_ms"] > 0
    line = breakdown.table({"drawing": row})[1]
    assert line.endswith(f"{row['preprocess_ms'] / row['reference_ms']:6.2f}x")


def test_the_inputs_named_second_pass_are_the_ones_that_take_it() -> None:
    for name, data in breakdown.inputs().items():
        _, spent = breakdown.staged(data, breakdown.time.thread_time)
        assert (spent["again"] > 0) == ("second pass" in name), name
