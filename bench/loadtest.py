"""``python -m bench.loadtest --profile slo|smoke|mixed|capacity [python -m loadtests options]``.

The local stack under load, start to finish (what ``make loadtest`` runs): starts the server
(``python -m local.serve`` on a free loopback port, default settings) and, for profiles
with a batch user, Azurite and the batch poller; runs the profile against them; prints the
summary; leaves the reports in ``--reports`` (default ``artifacts/loadtest``); stops everything
it started. The exit status is the load
test's: 0 passed, 1 a gate breached, 2 Locust failed.

``capacity`` runs twice, on a server with dynamic batching off and on (reports in
``batching-off/`` and ``batching-on/``), prints the two capacities side by side, writes them to
``capacity.json``, and fails (status 1) unless batching raises the capacity.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from loadtests import __main__ as client
from loadtests.profiles import PROFILES
from loadtests.settings import STORAGE_VARIABLE
from local import azurite, server
from shared.config import Settings
from shared.model_loader import ModelRegistry

# The local poller lists the batches container this often: often enough that the interval adds
# little to the upload-to-results time the batch users measure.
POLL_S = 0.2

log = logging.getLogger("emnist_edge.loadtest")


@contextlib.contextmanager
def batch_stack(wanted: bool) -> Iterator[None]:
    """Azurite and the poller, their connection string exported to the load generator (in
    the Functions host's own variable, which ``loadtests.settings`` reads); nothing when not
    wanted, or when Azurite is not installed (the batch users are then left out)."""
    if not wanted:
        yield
        return
    if not azurite.is_installed():
        log.warning("Azurite is not installed (npm ci): the batch users are left out")
        yield
        return
    # The load test's batches are small (processed in place): no shard workers, whose start
    # (torch, in each) would only compete with the server for the cores under measurement.
    settings = dataclasses.replace(Settings.from_env(), batch_poll_s=POLL_S, batch_workers=0)
    stack = azurite.start_local_batch_stack(settings, ModelRegistry())
    os.environ[STORAGE_VARIABLE] = stack.connection_string  # this process exits after the run
    try:
        yield
    finally:
        stack.stop()


def run_against_server(reports: Path, arguments: list[str], batching: bool | None = None,
                       cpus: frozenset[int] | None = None) -> int:
    """Start a server (dynamic batching as given, else the default; on ``cpus`` if given), run
    the load test against it with ``arguments``, stop the server; the load test's exit
    status."""
    settings: dict[str, str] = {}
    if batching is not None:
        settings["DYNAMIC_BATCHING"] = "1" if batching else "0"
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / "server.log").open("wb") as server_log, \
            server.running(server_log, settings, cpus=cpus) as running:
        print(f"server {running.url} ready in {running.ready_s:.1f} s "
              f"({', '.join(f'{k}={v}' for k, v in settings.items())})", flush=True)
        return client.main(["--host", running.url, "--reports", str(reports), *arguments])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default="slo")
    parser.add_argument("--reports", type=Path, default=Path("artifacts/loadtest"))
    parser.add_argument("--server-cpus", type=server.cpu_list, metavar="LIST",
                        help="the CPUs the server runs on, as taskset -c takes them (0-1, say); "
                             "the load generator takes the others (default: all share)")
    args, rest = parser.parse_known_args(argv)
    if args.server_cpus:
        print(server.leave_cpus(args.server_cpus), flush=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # it logs every storage request
    profile = PROFILES[args.profile]
    arguments = ["--profile", profile.name, *rest]
    if not profile.steps:
        with batch_stack(profile.batch_user):
            return run_against_server(args.reports, arguments, cpus=args.server_cpus)
    statuses = {}
    for batching in (False, True):
        mode = "on" if batching else "off"
        print(f"--- dynamic batching {mode}", flush=True)
        statuses[mode] = run_against_server(args.reports / f"batching-{mode}", arguments,
                                            batching, args.server_cpus)
    if 2 in statuses.values():  # Locust itself failed: no capacity to compare
        return 2
    capacities = {mode: json.loads((args.reports / f"batching-{mode}" / "capacity.json")
                                   .read_text())["capacity_rps"] for mode in statuses}
    ratio = (f"{capacities['on'] / capacities['off']:.2f}" if capacities["off"]
             else "n/a (off held at no step)")
    print(f"capacity (p99 <= bound, no failures): batching off {capacities['off']:.0f}/s, "
          f"on {capacities['on']:.0f}/s, ratio on/off {ratio}")
    (args.reports / "capacity.json").write_text(json.dumps(
        {"capacity_rps": capacities, "workers": Settings.from_env().workers}, indent=2))
    if capacities["on"] <= capacities["off"]:
        print("FAIL capacity: dynamic batching does not raise it (on "
              f"{capacities['on']:.0f}/s <= off {capacities['off']:.0f}/s)", file=sys.stderr)
        return max(1, *statuses.values())
    return max(statuses.values())


if __name__ == "__main__":
    sys.exit(main())
