"""Where the HTTP app's dynamic batches run (``functions.http_api.run_batch``): a batch of
single raw images on the event loop, one with a multi-image request in a worker thread, both in
a slot of the CPU limiter."""

from __future__ import annotations

import threading

import anyio
import pytest
from opentelemetry.trace import INVALID_SPAN

from functions.http_api import run_batch
from functions.http_classify import ClassifyCall
from functions.request_body import BodyKind


def call(kind: BodyKind) -> ClassifyCall:
    return ClassifyCall("/api/classify", kind, b"", "", None, None, 0, 0.0, INVALID_SPAN)


def where(calls: list[ClassifyCall]) -> tuple[bool, int]:
    """(whether the work ran on the event loop's thread, the limiter's tokens it held)."""
    cpu = anyio.CapacityLimiter(1)

    async def scenario() -> tuple[bool, int]:
        loop_thread = threading.get_ident()
        return await run_batch(
            cpu, calls, lambda: (threading.get_ident() == loop_thread, cpu.borrowed_tokens))

    return anyio.run(scenario)


@pytest.mark.parametrize("calls", [
    [call(BodyKind.RAW)],
    [call(BodyKind.RAW)] * 3,
], ids=["one", "three"])
def test_raw_images_run_on_the_event_loop_in_a_cpu_slot(calls):
    assert where(calls) == (True, 1)


@pytest.mark.parametrize("calls", [
    [call(BodyKind.MULTIPART)],
    [call(BodyKind.RAW), call(BodyKind.JSON)],
], ids=["multipart", "raw and json"])
def test_multi_image_requests_run_in_a_worker_thread_in_a_cpu_slot(calls):
    assert where(calls) == (False, 1)
