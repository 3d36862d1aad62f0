"""``python -m loadtests --host URL --profile slo|smoke|mixed|capacity --reports DIR``.

Runs the profile's bounded headless Locust run against ``URL`` (a local server or the deployed
app: the function key comes from ``EMNIST_EDGE_FUNCTION_KEY``), writes Locust's CSV, HTML and
JSON reports and a verdict to DIR, prints a summary and applies the gates: on a breach it exits
with status 1 and a message naming the breached figure (p95, p99, failure ratio, capacity).
Gate options override the profile's defaults; ``--p95-ms off`` switches a latency gate off.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from loadtests.gates import Gates
from loadtests.profiles import PROFILES, Profile
from loadtests.run import SUSTAINED, Capacity, LocustFailed, Verdict, run_capacity, run_profile


def _limit(raw: str) -> float | None:
    return None if raw.lower() == "off" else float(raw)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="base URL, e.g. http://127.0.0.1:7071")
    parser.add_argument("--profile", choices=PROFILES, default="slo")
    parser.add_argument("--reports", type=Path, default=Path("artifacts/loadtest"))
    # Gate options are absent unless given (SUPPRESS): 'off' parses to None, which must still
    # override the profile's gate.
    parser.add_argument("--p95-ms", type=_limit, default=argparse.SUPPRESS,
                        help="gate on p95 latency (ms), or 'off'")
    parser.add_argument("--p99-ms", type=_limit, default=argparse.SUPPRESS,
                        help="gate on p99 latency (ms), or 'off'; for capacity, the bound that "
                        "defines it")
    parser.add_argument("--max-failure-ratio", type=float, default=argparse.SUPPRESS,
                        help="failed / all requests")
    parser.add_argument("--min-rps", type=float, default=0.0,
                        help="capacity: the least capacity (requests/s) that passes")
    parser.add_argument("--users", type=int, help="HTTP users (default: the profile's)")
    parser.add_argument("--run-time", type=float, help="seconds (per step for capacity)")
    parser.add_argument("--think-ms", type=float, help="mean think time (not for capacity)")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> tuple[Profile, Gates]:
    """The profile and gates the options ask for: the profile's, with any overrides."""
    profile = PROFILES[args.profile]
    overrides = {name: value for name, value in (
        ("count", args.users), ("run_time_s", args.run_time), ("think_ms", args.think_ms),
    ) if value is not None}
    gates = profile.gates
    gate_overrides = {name: value for name, value in vars(args).items()
                      if name in ("p95_ms", "p99_ms", "max_failure_ratio")}
    return (dataclasses.replace(profile, **overrides),
            dataclasses.replace(gates, **gate_overrides))


def report(verdict: Verdict, gates: Gates) -> str:
    bounds = [f"{name} <= {limit:g} ms" for name, limit in
              (("p95", gates.p95_ms), ("p99", gates.p99_ms)) if limit is not None]
    return "\n".join([
        f"{verdict.prefix}: {verdict.users} HTTP users, exponential think time of mean "
        f"{verdict.think_ms:g} ms (about {verdict.offered_rps:.0f} requests/s offered)",
        verdict.summary.table(),
        "gates (all HTTP requests): " + ", ".join(
            [*bounds, f"failure ratio <= {gates.max_failure_ratio:g}"]),
    ])


def capacity_report(capacity: Capacity, gates: Gates, min_rps: float) -> tuple[str, list[str]]:
    """The steps, the knee, and the breach message when the capacity is below ``min_rps``."""
    lines = [f"capacity: the highest offered rate with p99 <= {gates.p99_ms:g} ms, failure "
             f"ratio <= {gates.max_failure_ratio:g} and at least {SUSTAINED:.0%} of it served"]
    for step in capacity.steps:
        http = step.summary.http
        verdict = "ok" if step.passed else "; ".join(step.breaches)
        lines.append(f"  offered {step.offered_rps:6.0f}/s  achieved {http.rps:6.1f}/s  "
                     f"p50 {http.p50_ms:g}  p95 {http.p95_ms:g}  p99 {http.p99_ms:g} ms  "
                     f"failures {http.failures}: {verdict}")
    knee = capacity.knee
    rps = knee.summary.http.rps if knee else 0.0
    lines.append(f"  capacity: {rps:.0f} requests/s served" + (
        f" at {knee.offered_rps:.0f}/s offered" if knee else ""))
    if knee is capacity.steps[-1]:
        lines.append("  (no step broke the bound: the capacity is at least this)")
    if knee is None:
        first = capacity.steps[0]
        return "\n".join(lines), [f"capacity: already {first.offered_rps:.0f}/s offered broke "
                                  f"it ({'; '.join(first.breaches)})"]
    if rps < min_rps:
        return "\n".join(lines), [f"capacity {rps:.0f} requests/s < {min_rps:g}"]
    return "\n".join(lines), []


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    profile, gates = configure(args)
    host = args.host.rstrip("/")
    try:
        if profile.steps:
            if gates.p99_ms is None:
                raise SystemExit("capacity needs a p99 bound (--p99-ms)")
            text, breaches = capacity_report(run_capacity(host, profile, args.reports, gates),
                                             gates, args.min_rps)
        else:
            verdict = run_profile(host, profile, args.reports, gates)
            text, breaches = report(verdict, gates), verdict.breaches
    except LocustFailed as error:
        print(f"loadtest {profile.name}: {error}", file=sys.stderr)
        return 2
    print(text)
    print(f"reports: {args.reports}/")
    if breaches:
        print(f"FAIL {profile.name} against {host}: " + "; ".join(breaches), file=sys.stderr)
        return 1
    print(f"PASS {profile.name} against {host}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
