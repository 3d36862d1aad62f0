"""The load profiles: which users, how many, how long, at what offered load, and their gates.

Latency is gated at a fixed offered load below capacity, with independent arrivals: closed-loop
users without think time only measure queueing (latency = users / throughput), and users paced
in step fire in bursts that measure the load generator's own queueing. Capacity is measured
apart, by stepping the offered load until p99 passes its bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.gates import Gates


@dataclass(frozen=True)
class Profile:
    """One bounded headless run (or, with ``steps``, one run per offered rate)."""

    name: str
    # Locust user classes of loadtests/locustfile.py (HTTP users; see ``batch_user``).
    users: tuple[str, ...]
    count: int
    run_time_s: float
    # Mean of each user's exponential think time; a capacity step sets its own.
    think_ms: float
    gates: Gates
    # Add one BatchUser when storage is configured (AzureWebJobsStorage...).
    batch_user: bool = False
    # Capacity: offered rates (requests/s) stepped through, ``count`` users each.
    steps: tuple[float, ...] = ()

    def think_ms_at(self, rate: float) -> float:
        """The mean think time at which ``count`` users offer ``rate`` requests/s (while the
        answer takes much less than the think time)."""
        return 1000.0 * self.count / rate


PROFILES = {
    # The SLO: 16 users, exponential think time of mean 100 ms (about 150 requests/s,
    # close to Poisson arrivals), 60 s of single-image uploads of a drawn 300-450 px character.
    "slo": Profile("slo", ("SloUser",), 16, 60, 100, Gates(p95_ms=15, p99_ms=25)),
    # A few seconds of everything, for the test suite and CI: the latency bounds only catch a
    # hang (CI machines are busy); any failure or wrong answer fails it.
    "smoke": Profile("smoke", ("MixedUser",), 4, 5, 100, Gates(p95_ms=1000, p99_ms=2000),
                     batch_user=True),
    # Every kind of request at the SLO's offered load; several-image forms take longer.
    "mixed": Profile("mixed", ("MixedUser",), 16, 60, 100, Gates(p95_ms=100, p99_ms=250),
                     batch_user=True),
    # The highest offered rate with p99 <= 100 ms, no failure, and at least 90% of it served:
    # 256 independent users whose think time sets the offered rate (many users, each seldom:
    # close to open-loop arrivals), 15 s per step, stopping at the first step that breaks.
    "capacity": Profile("capacity", ("SloUser",), 256, 15, 100, Gates(p95_ms=None, p99_ms=100),
                        steps=(100, 200, *range(300, 1250, 50))),
}
