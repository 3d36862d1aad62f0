"""``python -m bench.cost``: the billing formulas against dollars worked out by hand, the
break-even, the table from arguments and from a report, and the deployed figures it assumes."""

from __future__ import annotations

import json
import re

import pytest

from bench import cost
from shared.config import REPO_ROOT


@pytest.mark.parametrize(("active_s", "billed_s"), [
    (0.0, 1.0), (0.0058, 1.0), (1.0, 1.0), (1.01, 1.1), (1.3, 1.3), (8.51, 8.6)])
def test_an_activity_period_is_billed_at_least_a_second_then_in_100_ms(active_s, billed_s):
    assert cost.billed_seconds(active_s) == pytest.approx(billed_s)


def test_a_busy_instance_shares_its_seconds_among_its_requests() -> None:
    # 2 GB / 200 req/s = 0.01 GB-s a request: 10,000 GB-s x $0.000026 + $0.40 a million.
    assert cost.busy_per_million(200) == pytest.approx(0.26 + 0.40)
    assert cost.busy_per_million(100, 4, gb_s_usd=0.00001, execution_usd=0) == pytest.approx(0.4)


def test_a_request_alone_is_billed_the_minimum_period() -> None:
    # 2 GB x 1 s (5.8 ms rounds up to the minimum) = 2 GB-s: $52 a million, plus $0.40.
    assert cost.alone_per_million(0.0058) == pytest.approx(52.40)
    assert cost.alone_per_million(1.5, 4) == pytest.approx(4 * 1.5 * 26 + 0.40)


def test_a_large_batch_is_a_plan_and_one_execution_per_shard() -> None:
    # 1,000,000 items at 1,000/s: the plan (1 s) and 100 shards of 10 s, 101 executions.
    gb_s, executions = cost.batch_per_item(1000)
    assert gb_s * 1_000_000 == pytest.approx(2 * 1001)
    assert executions * 1_000_000 == pytest.approx(101)
    assert cost.batch_per_million(1000) == pytest.approx(2002 * 0.000026 + 101 * 0.40 / 1e6)
    # 25,000 items: the plan, two full shards (10 s) and one of 5,000 (5 s).
    gb_s, executions = cost.batch_per_item(1000, 25_000)
    assert (gb_s * 25_000, executions * 25_000) == pytest.approx((2 * 26, 4))


def test_a_small_batch_is_one_execution_in_place() -> None:
    gb_s, executions = cost.batch_per_item(1000, 5000)
    assert (gb_s * 5000, executions * 5000) == pytest.approx((2 * 5.0, 1))


def test_the_always_on_plan_is_billed_every_hour() -> None:
    assert cost.app_service_month() == pytest.approx(0.018 * 730) == pytest.approx(13.14)
    assert cost.app_service_month(0.1, instances=2) == pytest.approx(146)


def test_break_even_counts_the_free_grant() -> None:
    # Past both grants: (13.14 + 100,000 x 0.000026 + 250,000 x 0.40 / 1e6) / (0.01 x
    # 0.000026 + 0.40 / 1e6) = 15.84 / 6.6e-7.
    assert cost.break_even(13.14, 0.01) == pytest.approx(24_000_000)
    assert cost.break_even(13.14, 2.0) == pytest.approx(15.84 / 5.24e-5)
    # Between the two: the GB-s grant is used up at 50,000 requests, the executions' at
    # 250,000; $0.26 more is 5,000 requests of 2 GB-s.
    assert cost.break_even(0.26, 2.0) == pytest.approx(55_000)
    for monthly, gb_s in ((13.14, 0.01), (0.26, 2.0), (500, 0.3)):
        assert cost.flex_month(cost.break_even(monthly, gb_s), gb_s) == pytest.approx(monthly)
    assert cost.flex_month(40_000, 2.0) == 0


ARGUMENTS = ["--rps", "200", "--latency-ms", "5.8", "--png-items-per-s", "1000",
             "--idx-items-per-s", "10000"]


def test_main_prints_the_table_from_arguments(tmp_path, capsys) -> None:
    assert cost.main(["--report", str(tmp_path / "absent.json"), *ARGUMENTS]) == 0
    out = capsys.readouterr().out
    assert "from arguments" in out
    assert re.search(r"kept busy \(200\.0 req/s each\)\s+0\.01000\s+0\.660", out)
    assert re.search(r"each request alone \(5\.8 ms, billed 1\.0 s\)\s+2\.00000\s+52\.400", out)
    assert re.search(r"PNG zip \(1,000 items/s, 101 executions\)\s+0\.00200\s+0\.052", out)
    assert "$13.14 a month" in out
    assert "24.0 million requests a month (busy), 0.30 million (each alone)" in out


def test_main_needs_every_figure_without_a_report(tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_:
        cost.main(["--report", str(tmp_path / "absent.json"), "--rps", "200"])
    assert exit_.value.code == 2


def test_main_reads_the_report_per_instance(tmp_path, capsys) -> None:
    report = {"machine": {"cpus": 2},
              "http": {"modes": {"on": {"1": {"p50_ms": 5.8}, "16": {"rps": 406.5}}}},
              "batch": {"IDX": {"end_to_end": 8929.5}, "PNG zip": {"end_to_end": 1175.1}}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert cost.main(["--report", str(path), "--idx-items-per-s", "28100"]) == 0
    out = capsys.readouterr().out
    assert "kept busy (203.2 req/s each)" in out  # two workers on two cores, one vCPU
    assert "PNG zip (1,175 items/s" in out
    assert "IDX (28,100 items/s" in out  # the argument overrides the report


def test_the_deployed_figures_match_the_infrastructure() -> None:
    main = (REPO_ROOT / "infra" / "main.bicep").read_text()
    assert f"param instanceMemoryMB int = {cost.INSTANCE_MEMORY_MB}" in main
    app = (REPO_ROOT / "infra" / "app" / "function-app.bicep").read_text()
    assert f"EMNIST_EDGE_BATCH_SHARD_ITEMS: '{cost.SHARD_ITEMS}'" in app
