"""Locust users for emnist-edge: run by ``python -m loadtests`` (see ``loadtests.profiles``).

Directly: ``python -m locust -f loadtests/locustfile.py --host URL SloUser`` from the repository
root (``-m`` puts the root on the import path). Host-agnostic: a local server or the Azure URL,
with the function key from ``EMNIST_EDGE_FUNCTION_KEY`` sent as ``x-functions-key``.

- ``SloUser``: one drawn character of about 300-450 px per request: what the latency SLO is
  about, and all that the SLO and capacity profiles run.
- ``MixedUser``: single images of every size and format, multipart requests of 2-8 images, and
  a light share of health and model calls.
- ``BatchUser``: uploads a zip of drawn PNGs to the ``batches`` container (Azurite locally, the
  real account in Azure, both from the storage settings: ``loadtests.settings``), waits for
  ``results/<name>.summary.json`` and reports upload-to-results as a request of type BATCH.

Every user waits an exponentially distributed think time between requests (``--think-ms``,
mean 100 ms by default): independent users then approach Poisson arrivals, which is what a
latency gate at a fixed offered load needs (``loadtests.gates``). Every answer is checked
down to the label (``loadtests.checks``): a wrong label is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import gevent
from locust import FastHttpUser, User, events, task
from locust.env import Environment

from loadtests import checks, payloads
from loadtests.blobs import ResultNames, blob_service
from loadtests.corpus import FORMATS, MIX_SIZES, SLO_SIZES, Corpus, Sample, build
from loadtests.settings import ClientSettings

CLASSIFY = "/api/classify"
SETTINGS = ClientSettings.from_env()
HEADERS = SETTINGS.headers


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--think-ms", type=float, default=100.0,
                        help="mean of the exponential think time between a user's requests")
    parser.add_argument("--batch-items", type=int, default=20, help="images per batch upload")
    parser.add_argument("--batch-timeout-s", type=float, default=120.0,
                        help="how long a batch may take from upload to results")
    parser.add_argument("--warm-up-s", type=float, default=0.0,
                        help="seconds after all users have started before the statistics start")


@functools.cache
def _drawn(sizes: tuple[int, ...], formats: tuple[str, ...]) -> Corpus:
    """Drawn once per process: only the user classes that run pay for their images."""
    return Corpus(build(sizes, formats))


def exponential_think(user: User) -> float:
    """Seconds until the user's next request: exponential, mean ``--think-ms`` (100 ms:
    ``random.expovariate(10)``), so that users arrive independently, not in step."""
    return random.expovariate(1000.0 / user.environment.parsed_options.think_ms)


def _post_images(user: FastHttpUser, samples: Sequence[Sample], name: str) -> None:
    if len(samples) == 1:
        body, content_type = samples[0].data, samples[0].content_type
    else:
        body, content_type = payloads.multipart(samples)
    with user.client.post(CLASSIFY, data=body, name=name, catch_response=True,
                          headers={**HEADERS, "Content-Type": content_type}) as response:
        error = checks.classify_answer(response.status_code, response.content or b"",
                                       [sample.label for sample in samples])
        if error:
            response.failure(error)


def _get_json(user: FastHttpUser, path: str, key: str) -> None:
    with user.client.get(path, headers=HEADERS, catch_response=True) as response:
        if error := checks.json_answer(response.status_code, response.content or b"", key):
            response.failure(error)


class PacedUser(User):
    """Exponential think time, from the very start: each user first thinks, so that the users
    spawned together do not all fire their first request at once."""

    abstract = True
    wait_time = exponential_think
    # The images this user draws from (built before the users start: see ``_draw_corpora``).
    sizes: tuple[int, ...] = SLO_SIZES
    formats: tuple[str, ...] = FORMATS

    @classmethod
    def corpus(cls) -> Corpus:
        return _drawn(cls.sizes, cls.formats)

    def on_start(self) -> None:
        self.wait()


class SloUser(FastHttpUser, PacedUser):
    """Single-image uploads of a drawn character about 300-450 px square."""

    @task
    def classify_one(self) -> None:
        _post_images(self, self.corpus().pick(), "classify 1 image")


class MixedUser(FastHttpUser, PacedUser):
    """What a population of clients sends: mostly single images, some forms of several images,
    now and then a health probe or a look at the model."""

    sizes = MIX_SIZES

    @task(16)
    def classify_one(self) -> None:
        _post_images(self, self.corpus().pick(), "classify 1 image")

    @task(4)
    def classify_several(self) -> None:
        _post_images(self, self.corpus().pick(random.randint(2, 8)), "classify 2-8 images")

    @task(1)
    def health(self) -> None:
        _get_json(self, "/api/health/ready", "status")

    @task(1)
    def model(self) -> None:
        _get_json(self, "/api/model", "labels")


class BatchUser(PacedUser):
    """Uploads a small batch, waits for its results, checks every label, cleans up."""

    fixed_count = 1  # one is enough to measure turnaround; more would only load the poller
    formats = ("PNG",)
    # The results of a batch are a blob poll away: poll often enough that the poll interval
    # adds little to the turnaround it measures.
    poll_s = 0.1

    def on_start(self) -> None:
        service = blob_service(SETTINGS)
        self.batches = service.get_container_client(SETTINGS.batch_container)
        self.results = service.get_container_client(SETTINGS.results_container)
        super().on_start()

    @task
    def zip_of_pngs(self) -> None:
        options = self.environment.parsed_options
        body, expected = payloads.batch_zip(self.corpus().pick(options.batch_items))
        name = f"loadtest-{uuid.uuid4().hex}.zip"
        started = time.perf_counter()
        error: str | None = None
        try:
            self.batches.upload_blob(name, body)
            error = self._wait_and_check(name, expected, options.batch_timeout_s)
        except Exception as exc:  # storage errors are this request's failure, not a crash
            error = f"{type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="BATCH", name=f"zip of {len(expected)} PNGs: upload to results",
            response_time=elapsed_ms, response_length=len(body),
            exception=RuntimeError(error) if error else None, context={},
        )
        self._clean_up(name)

    def _wait_and_check(self, name: str, expected: list[str], timeout_s: float) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        names = ResultNames.of(name)
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            for marker in (names.summary, names.error):
                try:
                    document = self.results.download_blob(marker).readall()
                except ResourceNotFoundError:
                    continue
                if marker == names.error:
                    return f"the batch failed: {document[:300]!r}"
                csv_text = self.results.download_blob(names.csv).readall().decode("utf-8")
                return checks.batch_results(json.loads(document), csv_text, expected)
            time.sleep(self.poll_s)
        return f"no results after {timeout_s:.0f} s"

    def _clean_up(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        names = ResultNames.of(name)
        for container, blob in ((self.batches, name), (self.results, names.csv),
                                (self.results, names.summary), (self.results, names.error)):
            with contextlib.suppress(ResourceNotFoundError):
                container.delete_blob(blob)


@events.init.add_listener
def _draw_corpora(environment: Environment, **_: Any) -> None:
    """Draw the images before any user starts: drawing blocks the load generator's event loop,
    which would hold up (and inflate the times of) every request in flight."""
    for user_class in environment.user_classes:
        if issubclass(user_class, PacedUser):
            user_class.corpus()


@events.init.add_listener
def _warm_up(environment: Environment, **_: Any) -> None:
    """Start the statistics ``--warm-up-s`` after the last user has started (Locust's own
    --reset-stats starts them at once): creating users blocks the load generator for a moment,
    and each user's first request opens its connection; neither is what the run measures."""

    def start_measuring(**_: Any) -> None:
        gevent.spawn_later(environment.parsed_options.warm_up_s, environment.stats.reset_all)

    environment.events.spawning_complete.add_listener(start_measuring)
