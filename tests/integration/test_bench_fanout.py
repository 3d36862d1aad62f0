"""``python -m bench.fanout`` end to end on tiny batches (through its own Azurite and real
worker processes): every round of every configuration is measured and the medians and ratios
written, so that ``make bench`` cannot break unseen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from local.azurite import is_installed
from shared.config import PREFIX, REPO_ROOT


@pytest.mark.skipif(not is_installed(), reason="Azurite is not installed: run `npm ci`")
def test_the_fanout_benchmark_alternates_rounds_and_reports_medians(tmp_path):
    out = tmp_path / "fanout.json"
    env = {**os.environ, PREFIX + "BATCH_SHARD_ITEMS": "40", PREFIX + "TORCH_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--png-items", "100", "--idx-items", "100",
         "--workers", "1", "--rounds", "2", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for batch in ("png_zip", "idx"):
        figures = report[batch]
        assert figures["items"] == 100 and len(figures["model_only_s"]) == 2
        for key in ("in_place", "fanout_1"):
            assert len(figures[key]["rounds"]) == 2
            assert figures[key]["items_per_s"] > 0
        assert figures["fanout_1"]["rounds"][0]["shards"] == 3
        # Who spent the CPU: in place, this process alone; fanned out, mostly the worker.
        in_place, fanned_out = figures["in_place"]["rounds"][0], figures["fanout_1"]["rounds"][0]
        assert in_place["cpu_s"]["workers"] == 0 and in_place["cpu_s"]["here"] > 0
        assert fanned_out["cpu_s"]["workers"] > 0 and fanned_out["cpu_s"]["azurite"] >= 0
        for run in (in_place, fanned_out):  # from figures rounded to 0.01 s, on tiny runs
            assert run["cores_busy"] == pytest.approx(
                sum(run["cpu_s"].values()) / run["seconds"], abs=0.01 + 0.03 / run["seconds"])
        assert figures["fanout_1"]["ratio_to_in_place"] == pytest.approx(
            figures["fanout_1"]["items_per_s"] / figures["in_place"]["items_per_s"], abs=0.01)
