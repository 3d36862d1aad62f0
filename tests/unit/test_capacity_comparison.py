"""``python -m bench.loadtest --profile capacity``: dynamic batching must raise the capacity.

The two capacity runs are replaced by their results (what ``python -m loadtests`` leaves in
each mode's ``capacity.json``); the comparison, its report and its exit status are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import loadtest


@pytest.fixture
def capacities(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    measured: dict[str, float] = {}

    def run(reports: Path, arguments: list[str], batching: bool | None = None,
            cpus: frozenset[int] | None = None) -> int:
        reports.mkdir(parents=True)
        rps = measured["on" if batching else "off"]
        (reports / "capacity.json").write_text(json.dumps({"capacity_rps": rps}))
        return 0

    monkeypatch.setattr(loadtest, "run_against_server", run)
    return measured


@pytest.mark.parametrize(("off", "on", "status"), [(580, 676, 0), (580, 580, 1), (600, 550, 1)])
def test_batching_must_raise_the_capacity(capacities, tmp_path, capsys, off, on, status) -> None:
    capacities.update(off=off, on=on)
    assert loadtest.main(["--profile", "capacity", "--reports", str(tmp_path)]) == status
    out, err = capsys.readouterr()
    assert f"batching off {off}/s, on {on}/s" in out
    assert ("dynamic batching does not raise it" in err) == bool(status)
    assert json.loads((tmp_path / "capacity.json").read_text())["capacity_rps"] == {
        "off": off, "on": on}
