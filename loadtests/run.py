"""Bounded headless Locust runs, each in its own process, and their verdicts.

Locust runs as a subprocess (``python -m locust``): gevent patches the whole interpreter it is
imported into, and the caller (the local stack, the benchmark) keeps threads and torch of its own.
Each run writes Locust's CSV, HTML and JSON reports under one prefix in the reports folder, and
its log beside them; it is killed if it outlives its run time by more than a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.gates import Gates, Summary
from loadtests.profiles import Profile
from loadtests.settings import ClientSettings

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# Locust runs from the folder that holds this package, so that the locustfile imports it.
CLIENT_ROOT = LOCUSTFILE.parent.parent
# Time to start Locust, stop users (in-flight batches finish) and write the reports.
GRACE_S = 60
STOP_TIMEOUT_S = 10
# A capacity step holds only if the server keeps up: users whose answers come late send less
# (they are closed loops), so a saturated server would otherwise pass on a lowered load.
SUSTAINED = 0.9
# Users start over this many seconds, and the statistics start this much later (the locustfile's
# --warm-up-s): what was measured while the users were being created (which blocks the load
# generator for a moment) and were opening their connections is dropped. Both precede the run time.
SPAWN_S = 2.0
WARM_UP_S = 3.0


class LocustFailed(RuntimeError):
    """Locust itself did not complete (bad options, a crash): no figures to judge."""


@dataclass(frozen=True)
class Verdict:
    """One run's figures and the gates' messages (empty: passed)."""

    prefix: str
    # HTTP users, and the mean think time that paced them.
    users: int
    think_ms: float
    summary: Summary
    breaches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.breaches

    @property
    def offered_rps(self) -> float:
        """What the HTTP users offer while answers are fast next to their think time."""
        return 1000.0 * self.users / self.think_ms

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "users": self.users, "think_ms": self.think_ms,
                "offered_rps": self.offered_rps, **self.summary.to_dict(),
                "breaches": self.breaches, "passed": self.passed}


@dataclass(frozen=True)
class Capacity:
    """The capacity steps run, and the knee: the last step whose gates held."""

    steps: list[Verdict]

    @property
    def knee(self) -> Verdict | None:
        passed = [step for step in self.steps if step.passed]
        return passed[-1] if passed else None

    def to_dict(self) -> dict[str, Any]:
        knee = self.knee
        return {"capacity_rps": knee.summary.http.rps if knee else 0.0,
                "knee": knee.prefix if knee else None,
                "steps": [step.to_dict() for step in self.steps]}


def with_batch_user(profile: Profile) -> bool:
    """Whether this run adds a BatchUser: the profile wants one and storage is configured."""
    return profile.batch_user and ClientSettings.from_env().has_storage


def run_locust(host: str, users: tuple[str, ...], count: int, think_ms: float,
               run_time_s: float, reports: Path, prefix: str) -> Summary:
    """One headless run of ``count`` users of the given classes; its summary."""
    reports.mkdir(parents=True, exist_ok=True)
    base = reports / prefix
    total_s = SPAWN_S + WARM_UP_S + run_time_s
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--users", str(count), "--spawn-rate", f"{count / SPAWN_S:g}",
        "--run-time", f"{total_s:g}s", "--warm-up-s", f"{WARM_UP_S:g}",
        "--stop-timeout", str(STOP_TIMEOUT_S), "--exit-code-on-error", "0",
        "--only-summary", "--csv", str(base), "--html", f"{base}.html",
        "--json-file", str(base), "--think-ms", f"{think_ms:g}", *users,
    ]
    log = base.with_suffix(".log")
    with log.open("wb") as output:
        try:
            done = subprocess.run(command, cwd=CLIENT_ROOT, stdout=output,
                                  stderr=subprocess.STDOUT,
                                  timeout=total_s + GRACE_S,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise LocustFailed(
                f"Locust ran past {total_s + GRACE_S:g} s; see {log}"
            ) from exc
    stats = base.with_suffix(".json")
    if done.returncode != 0 or not stats.is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise LocustFailed(f"Locust exited with {done.returncode}; the end of {log}:\n{tail}")
    return Summary.read(stats)


def run_profile(host: str, profile: Profile, reports: Path, gates: Gates,
                prefix: str | None = None) -> Verdict:
    """The profile's one run, judged by ``gates``; the verdict is also written as
    ``<prefix>.verdict.json``."""
    users, count = profile.users, profile.count
    if with_batch_user(profile):
        users, count = (*users, "BatchUser"), count + 1  # BatchUser has a fixed count of one
    prefix = prefix or profile.name
    summary = run_locust(host, users, count, profile.think_ms, profile.run_time_s, reports,
                         prefix)
    verdict = Verdict(prefix, profile.count, profile.think_ms, summary,
                      gates.breaches(summary.http, summary.everything))
    (reports / f"{prefix}.verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    return verdict


def run_capacity(host: str, profile: Profile, reports: Path, gates: Gates,
                 prefix: str | None = None) -> Capacity:
    """Step the offered rate up until a step breaks the gates (p99, failures) or is not
    sustained: every step run, also written as ``<prefix>.json``."""
    prefix = prefix or profile.name
    steps: list[Verdict] = []
    for rate in profile.steps:
        think_ms = profile.think_ms_at(rate)
        name = f"{prefix}-{rate:g}rps"
        summary = run_locust(host, profile.users, profile.count, think_ms, profile.run_time_s,
                             reports, name)
        breaches = gates.breaches(summary.http, summary.everything)
        if summary.http.rps < SUSTAINED * rate:
            breaches.append(f"throughput {summary.http.rps:.0f}/s < {SUSTAINED:.0%} of the "
                            f"{rate:g}/s offered")
        steps.append(Verdict(name, profile.count, think_ms, summary, breaches))
        if breaches:
            break
    capacity = Capacity(steps)
    (reports / f"{prefix}.json").write_text(json.dumps(capacity.to_dict(), indent=2))
    return capacity

