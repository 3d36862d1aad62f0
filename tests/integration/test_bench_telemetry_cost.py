"""``python -m bench.telemetry_cost``: three apps in one process, each answering every image,
their CPU per request side by side."""

from __future__ import annotations

import json
import subprocess
import sys

from shared.config import REPO_ROOT


def test_telemetry_cost_measures_the_three_apps_on_the_same_images(tmp_path):
    out = tmp_path / "telemetry.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.telemetry_cost", "--rounds", "2", "--requests", "6",
         "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["apps"]) == ["off", "one by one", "on"]
    assert report["apps"]["off"]["extra_us"] == 0
    for name, rounds in report["per_round_us"].items():
        assert len(rounds) == 2 and all(0 < cpu < 1e6 for cpu in rounds), name
    assert "extra us" in done.stdout
