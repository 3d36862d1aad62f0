"""``python -m bench.http_clients --against DIR``: another checkout's server, this one's and the
reference server measured side by side (here the other checkout is this one)."""

from __future__ import annotations

from shared.config import REPO_ROOT
from tests.integration.conftest import run_http_clients


def test_an_ab_run_measures_both_checkouts_and_the_reference(tmp_path):
    lines = run_http_clients(tmp_path, "--against", str(REPO_ROOT), "--clients", "1", "2",
                             "--workers", "1")
    rows = {line.split(":")[0].strip() + ":" + line.split(":")[1].split()[0]: line.split()[-3:]
            for line in lines if "clients:" in line}
    assert set(rows) == {f"{c} clients:{f}" for c in (1, 2) for f in ("p50", "p99", "rps")}
    assert all(float(value) > 0 for values in rows.values() for value in values)
    assert {path.name for path in tmp_path.iterdir()} == {
        "server-other.log", "server-this.log", "server-reference.log"}


def test_a_per_core_run_measures_one_worker_and_two_against_the_reference(tmp_path):
    lines = run_http_clients(tmp_path, "--per-core", "--clients", "1", "2", "--workers", "2")
    columns = next(line for line in lines if "reference/1" in line and ":" not in line).split()
    assert columns == ["this/1", "reference/1", "this/2", "reference/2"]
    cpu = [line.split()[-4:] for line in lines if "clients: cpu ms" in line]
    assert len(cpu) == 2 and all(float(value) > 0 for values in cpu for value in values)
    # Two blocks of ratios (requests/s, then requests per CPU second), a row per concurrency.
    ratios = [line.split() for line in lines if line.strip().endswith("x") and "clients" in line]
    assert [row[0] for row in ratios] == ["1", "2", "1", "2"]
    for row in ratios:  # the reference's one worker is its own base
        values = row[2:]
        assert len(values) == 4 and values[1] == "1.00x"
        assert all(float(value.rstrip("x")) > 0 for value in values)
    assert {path.name for path in tmp_path.iterdir()} == {
        "server-this-1.log", "server-reference-1.log", "server-this-2.log",
        "server-reference-2.log"}


def test_photos_can_be_posted_instead_of_drawings(tmp_path):
    """``--photos``: every answer is still checked down to its label (the run fails otherwise)."""
    lines = run_http_clients(tmp_path, "--photos", "--against", str(REPO_ROOT), "--clients", "1",
                             "--workers", "1")
    assert "phone photos" in lines[0]
    assert sum("clients:" in line for line in lines) == 3
