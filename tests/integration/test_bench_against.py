"""``python -m bench.http_clients --against DIR``: another checkout's server, this one's and the
reference server measured side by side (here the other checkout is this one)."""

from __future__ import annotations

import subprocess
import sys

from shared.config import REPO_ROOT


def test_an_ab_run_measures_both_checkouts_and_the_reference(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_clients", "--against", str(REPO_ROOT), "--clients",
         "1", "2", "--requests", "20", "--rounds", "1", "--workers", "1", "--logs",
         str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split(":")[0].strip() + ":" + line.split(":")[1].split()[0]: line.split()[-3:]
            for line in done.stdout.splitlines() if "clients:" in line}
    assert set(rows) == {f"{c} clients:{f}" for c in (1, 2) for f in ("p50", "p99", "rps")}
    assert all(float(value) > 0 for values in rows.values() for value in values)
    assert {path.name for path in tmp_path.iterdir()} == {
        "server-other.log", "server-this.log", "server-reference.log"}
