"""``python -m bench.cost`` (end of ``make bench``): what a million classifications cost.

Azure Functions Flex Consumption, on-demand billing ("Flex Consumption plan hosting", Billing,
https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing, read
2026-12-03): an instance is billed its configured memory for as long as it is executing
something, in GB-s, plus a price per execution; concurrent executions on one instance share
that time ("Estimating consumption-based costs",
https://learn.microsoft.com/azure/azure-functions/functions-consumption-costs, ms.date
2025-02-10, read 2026-12-03: ten concurrent requests on one 2,048 MB instance bill 2 GB x 3600 s
an hour). A period of activity is billed at least 1,000 ms, then in steps of 100 ms. So, for a
million requests:

    busy instance (throughput-bound):  1e6 x (GB / (requests/s per instance) x $/GB-s + $/execution)
    a request alone on its instance:   1e6 x (GB x max(1 s, its duration) x $/GB-s + $/execution)

A kept-busy instance spends 1 / (requests/s per instance) instance-seconds on each request:
the measured throughput per core gives it (the deployed 2,048 MB instance has 1 vCPU:
flex-consumption-plan#instance-sizes). A request that arrives alone is billed its whole
activity period: at our latency (a few ms) that is the 1 s minimum, the worst case. Real
traffic lies between.
A batch blob is one blob-triggered execution (in place up to ``SHARD_ITEMS``; above, it plans
and queues shards, billed here its 1 s minimum) plus one queue-triggered execution per shard
of ``SHARD_ITEMS`` items, each busy for its items / (items/s per instance).

Per-million figures leave out the monthly free grant (they are the price of one more million);
the break-even against an always-on App Service plan counts it. Prices: USD, pay as you go,
list prices; see the constants. Reads ``artifacts/bench/report.json`` (``python -m
bench.report``) when it exists; ``--rps`` etc. give or override the per-instance figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.config import REPO_ROOT

REPORT = REPO_ROOT / "artifacts" / "bench" / "report.json"
MILLION = 1_000_000

# Flex Consumption on demand, the two rates of Microsoft's worked example in "Estimating
# consumption-based costs" (https://learn.microsoft.com/azure/azure-functions/functions-consumption-costs,
# ms.date 2025-02-10) and the pay-as-you-go list prices of the pricing page
# (https://azure.microsoft.com/pricing/details/functions/, Flex Consumption, On Demand; read
# 2026-12-03).
GB_S_USD = 0.000026  # On Demand Execution Time, per GB-s
EXECUTION_USD = 0.40 / MILLION  # On Demand Total Executions, $0.40 per million
# Monthly free grant of on-demand billing, per subscription (same pricing page, read 2026-12-03).
FREE_GB_S = 100_000
FREE_EXECUTIONS = 250_000
# "The minimum billable execution period ... is 1,000 ms. Past that, the billable activity
# period is rounded up to the nearest 100 ms" (flex-consumption-plan#billing, read 2026-12-03).
MIN_BILLED_S = 1.0
BILLING_STEP_S = 0.1

# What we deploy: instanceMemoryMB (infra/main.bicep, default 2048), 1 vCPU at that size
# ("2048 MB: 1 CPU core", flex-consumption-plan#instance-sizes, read 2026-12-03), and
# EMNIST_EDGE_BATCH_SHARD_ITEMS (infra/app/function-app.bicep).
INSTANCE_MEMORY_MB = 2048
INSTANCE_GB = INSTANCE_MEMORY_MB / 1024  # GB-s are MB-ms / 1,024,000 (functions-consumption-costs)
INSTANCE_VCPUS = 1
SHARD_ITEMS = 10_000

# The always-on comparison: the repository does not say which plan the original ran on, so a
# typical small Linux plan, Basic B1 (1 core, 1.75 GB), pay as you go, 730 hours a month
# (https://azure.microsoft.com/pricing/details/app-service/linux/, read 2026-12-03).
APP_SERVICE_PLAN = "App Service B1 Linux"
APP_SERVICE_HOURLY_USD = 0.018
HOURS_PER_MONTH = 730


def billed_seconds(active_s: float) -> float:
    """One period of activity as billed: at least 1 s, then rounded up to 100 ms."""
    steps = math.ceil(round(active_s / BILLING_STEP_S, 6))
    return max(MIN_BILLED_S, steps * BILLING_STEP_S)


def per_million(gb_s: float, executions: float = 1.0, *, gb_s_usd: float = GB_S_USD,
                execution_usd: float = EXECUTION_USD) -> float:
    """Dollars for a million units, each billed ``gb_s`` GB-s and ``executions`` executions."""
    return MILLION * (gb_s * gb_s_usd + executions * execution_usd)


def busy_gb_s(rps: float, memory_gb: float = INSTANCE_GB) -> float:
    """A request's share of a kept-busy instance: its memory for 1 / (requests/s) seconds."""
    return memory_gb / rps


def alone_gb_s(latency_s: float, memory_gb: float = INSTANCE_GB) -> float:
    """A request alone on its instance: its memory for the request's own billed period."""
    return memory_gb * billed_seconds(latency_s)


def busy_per_million(rps: float, memory_gb: float = INSTANCE_GB, gb_s_usd: float = GB_S_USD,
                     execution_usd: float = EXECUTION_USD) -> float:
    """Dollars per million requests when instances are kept busy at ``rps`` each."""
    return per_million(busy_gb_s(rps, memory_gb), gb_s_usd=gb_s_usd,
                       execution_usd=execution_usd)


def alone_per_million(latency_s: float, memory_gb: float = INSTANCE_GB,
                      gb_s_usd: float = GB_S_USD, execution_usd: float = EXECUTION_USD) -> float:
    """Dollars per million requests that each arrive alone and take ``latency_s``."""
    return per_million(alone_gb_s(latency_s, memory_gb), gb_s_usd=gb_s_usd,
                       execution_usd=execution_usd)


def batch_per_item(items_per_s: float, batch_items: int = MILLION,
                   shard_items: int = SHARD_ITEMS,
                   memory_gb: float = INSTANCE_GB) -> tuple[float, float]:
    """GB-s and executions per item of a batch blob of ``batch_items``: processed in place up
    to ``shard_items``; above, the blob trigger's plan (billed its minimum) and one execution
    per shard, each busy for its items / ``items_per_s``."""
    if batch_items <= shard_items:
        seconds, executions = billed_seconds(batch_items / items_per_s), 1
    else:
        full, rest = divmod(batch_items, shard_items)
        seconds = billed_seconds(0) + full * billed_seconds(shard_items / items_per_s)
        seconds += billed_seconds(rest / items_per_s) if rest else 0.0
        executions = 1 + full + bool(rest)
    return memory_gb * seconds / batch_items, executions / batch_items


def batch_per_million(items_per_s: float, batch_items: int = MILLION,
                      shard_items: int = SHARD_ITEMS, memory_gb: float = INSTANCE_GB,
                      gb_s_usd: float = GB_S_USD, execution_usd: float = EXECUTION_USD) -> float:
    """Dollars per million batch items, sent in batches of ``batch_items``."""
    return per_million(*batch_per_item(items_per_s, batch_items, shard_items, memory_gb),
                       gb_s_usd=gb_s_usd, execution_usd=execution_usd)


def app_service_month(hourly_usd: float = APP_SERVICE_HOURLY_USD, instances: int = 1) -> float:
    """An always-on plan's month: billed every hour whether it serves anything or not."""
    return hourly_usd * HOURS_PER_MONTH * instances


def flex_month(units: float, gb_s: float, executions: float = 1.0) -> float:
    """Flex on demand for ``units`` a month, each billed ``gb_s`` and ``executions``, after
    the monthly free grant."""
    return (max(0.0, units * gb_s - FREE_GB_S) * GB_S_USD
            + max(0.0, units * executions - FREE_EXECUTIONS) * EXECUTION_USD)


def break_even(monthly_usd: float, gb_s: float, executions: float = 1.0) -> float:
    """Units a month at which Flex on demand costs ``monthly_usd`` (``flex_month`` is linear
    between the two points where the grants run out)."""
    grants_end = sorted({0.0, FREE_GB_S / gb_s, FREE_EXECUTIONS / executions})
    for start in reversed(grants_end):
        slope = ((gb_s * GB_S_USD if start >= FREE_GB_S / gb_s else 0.0)
                 + (executions * EXECUTION_USD if start >= FREE_EXECUTIONS / executions else 0.0))
        cost = flex_month(start, gb_s, executions)
        if cost <= monthly_usd:
            return start + (monthly_usd - cost) / slope
    raise ValueError(f"no volume costs ${monthly_usd}")


@dataclass(frozen=True)
class Measured:
    """Per-instance figures: requests/s of a kept-busy instance, one request's latency (s),
    batch items/s of the PNG zip and of the IDX file."""

    rps: float
    latency_s: float
    png_items_per_s: float
    idx_items_per_s: float


def from_report(report: dict[str, Any]) -> Measured:
    """``bench.report``'s figures per instance: HTTP at 16 clients with batching on, one
    worker per core, times the instance's vCPUs; the batches are processed by one process
    (one torch thread), as one instance runs them."""
    modes, batch = report["http"]["modes"]["on"], report["batch"] or {}
    return Measured(
        rps=modes["16"]["rps"] * INSTANCE_VCPUS / report["machine"]["cpus"],
        latency_s=modes["1"]["p50_ms"] / 1000,
        png_items_per_s=batch.get("PNG zip", {}).get("end_to_end", math.nan),
        idx_items_per_s=batch.get("IDX", {}).get("end_to_end", math.nan))


def table(measured: Measured, plan_usd: float) -> list[str]:
    """The per-million figures, the plan's month and the break-even volumes."""
    busy, alone = busy_gb_s(measured.rps), alone_gb_s(measured.latency_s)
    rows = [
        (f"realtime, instances kept busy ({measured.rps:,.1f} req/s each)", busy,
         per_million(busy)),
        (f"realtime, each request alone ({measured.latency_s * 1000:.1f} ms, billed "
         f"{billed_seconds(measured.latency_s):.1f} s)", alone, per_million(alone)),
    ]
    batches = (("PNG zip", measured.png_items_per_s), ("IDX", measured.idx_items_per_s))
    for title, rate in ((t, r) for t, r in batches if not math.isnan(r)):  # nan: not measured
        gb_s, executions = batch_per_item(rate)
        rows.append((f"batch items, {title} ({rate:,.0f} items/s, "
                     f"{executions * MILLION:.0f} executions)", gb_s,
                     per_million(gb_s, executions)))
    lines = [f"Flex Consumption on demand, {INSTANCE_MEMORY_MB} MB instance ({INSTANCE_VCPUS} "
             f"vCPU): ${GB_S_USD:.6f}/GB-s, ${EXECUTION_USD * MILLION:.2f} per million executions",
             f"{'per million (batches of a million items)':60} {'GB-s each':>10} {'USD':>9}"]
    lines += [f"  {name:58} {gb_s:10.5f} {usd:9.3f}" for name, gb_s, usd in rows]
    lines += [f"{APP_SERVICE_PLAN}, always on: ${plan_usd:,.2f} a month; Flex costs as much, "
              "free grant counted, at",
              f"  {break_even(plan_usd, busy) / MILLION:,.1f} million requests a month (busy), "
              f"{break_even(plan_usd, alone) / MILLION:,.2f} million (each alone)"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=REPORT,
                        help="bench.report's JSON (default: %(default)s, when it exists)")
    parser.add_argument("--rps", type=float, help="requests/s of one busy instance")
    parser.add_argument("--latency-ms", type=float, help="one request alone, ms")
    parser.add_argument("--png-items-per-s", type=float, help="PNG zip items/s, one instance")
    parser.add_argument("--idx-items-per-s", type=float, help="IDX items/s, one instance")
    parser.add_argument("--plan-usd-per-hour", type=float, default=APP_SERVICE_HOURLY_USD,
                        help=f"{APP_SERVICE_PLAN} (default: %(default)s)")
    args = parser.parse_args(argv)
    given = {"rps": args.rps, "png_items_per_s": args.png_items_per_s,
             "idx_items_per_s": args.idx_items_per_s,
             "latency_s": args.latency_ms and args.latency_ms / 1000}
    if args.report.exists():
        measured = from_report(json.loads(args.report.read_text()))
        source = str(args.report)
    elif None in given.values():
        parser.error(f"{args.report} not found: give --rps, --latency-ms, --png-items-per-s "
                     "and --idx-items-per-s")
    else:
        measured, source = Measured(**given), "arguments"
    measured = replace(measured, **{name: v for name, v in given.items() if v is not None})
    print(f"cost of a million classifications, from {source}")
    print("\n".join(table(measured, app_service_month(args.plan_usd_per_hour))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
