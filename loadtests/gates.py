"""Locust's final statistics -> the figures the SLO is about, and the gates that judge them.

Locust's JSON report keeps each request type's response-time histogram (times under 100 ms in
whole milliseconds, coarser above), so the percentiles of all HTTP requests together come from
the merged histograms, not from an average of per-type percentiles. Batch turnarounds (request
type BATCH, seconds long) are reported apart and stay out of the HTTP latency figures; their
failures still count.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BATCH = "BATCH"
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Figures:
    """Counts, rate and latency percentiles (ms) of one group of requests."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Gates:
    """Thresholds; None switches a latency gate off."""

    p95_ms: float | None
    p99_ms: float | None
    max_failure_ratio: float = 0.0

    def breaches(self, http: Figures, everything: Figures) -> list[str]:
        """One message per breached figure, naming it; empty when every gate holds."""
        found = []
        if http.requests == 0:
            found.append("requests: no HTTP request was answered")
        for name, limit in (("p95", self.p95_ms), ("p99", self.p99_ms)):
            value = getattr(http, f"{name}_ms")
            if limit is not None and value > limit:
                found.append(f"{name} latency {value:g} ms > {limit:g} ms")
        if everything.failure_ratio > self.max_failure_ratio:
            found.append(f"failure ratio {everything.failure_ratio:.4f} "
                         f"({everything.failures} of {everything.requests}) "
                         f"> {self.max_failure_ratio:g}")
        return found


@dataclass(frozen=True)
class Summary:
    """A run's figures: every request type, all HTTP requests, and everything together."""

    entries: list[Figures]
    http: Figures
    everything: Figures

    @classmethod
    def read(cls, stats_json: Path) -> Summary:
        """From the file Locust's ``--json-file`` wrote."""
        raw: list[dict[str, Any]] = json.loads(stats_json.read_text())
        entries = [_figures(f"{e['method']} {e['name']}", [e]) for e in raw]
        http = [e for e in raw if e["method"] != BATCH]
        return cls(entries, _figures("all HTTP", http), _figures("all", raw))

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [asdict(e) for e in self.entries], "http": asdict(self.http),
                "all": asdict(self.everything)}

    def table(self) -> str:
        rows = self.entries if len(self.entries) == 1 else [*self.entries, self.http]
        width = max(len(row.name) for row in rows)
        lines = [f"  {'':{width}}  {'requests':>8} {'fails':>6} {'req/s':>7} "
                 f"{'p50':>6} {'p95':>6} {'p99':>6} {'max':>7}  (ms)"]
        lines += [f"  {r.name:{width}}  {r.requests:>8} {r.failures:>6} {r.rps:>7.1f} "
                  f"{r.p50_ms:>6g} {r.p95_ms:>6g} {r.p99_ms:>6g} {r.max_ms:>7g}" for r in rows]
        return "\n".join(lines)


def percentile(histogram: Counter[float], fraction: float) -> float:
    """The smallest recorded time with at least ``fraction`` of the requests at or below it."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    rank = math.ceil(fraction * total)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def _figures(name: str, raw: Iterable[dict[str, Any]]) -> Figures:
    raw = list(raw)
    histogram: Counter[float] = Counter()
    for entry in raw:
        histogram.update({float(k): v for k, v in entry["response_times"].items()})
    requests = sum(e["num_requests"] for e in raw)
    started = min((e["start_time"] for e in raw), default=0.0)
    ended = max((e["last_request_timestamp"] or started for e in raw), default=started)
    p50, p95, p99 = (percentile(histogram, p / 100) for p in PERCENTILES)
    return Figures(
        name=name, requests=requests, failures=sum(e["num_failures"] for e in raw),
        rps=requests / (ended - started) if ended > started else 0.0,
        p50_ms=p50, p95_ms=p95, p99_ms=p99,
        max_ms=round(max((e["max_response_time"] for e in raw), default=0), 1),
    )
