"""The dynamic batcher: order, batch size and wait bounds, errors kept to their own request,
concurrency and shutdown. A fake batch function records the batches it was given; asyncio's
own thread hop runs it, as the app's does."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from shared.dynamic_batcher import BatcherClosed, DynamicBatcher


class Recorder:
    """Doubles each item; records every batch; blocks while ``gate`` is clear."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.gate.wait(5)
        self.batches.append(list(items))
        return [2 * item for item in items]


async def submit_all(batcher: DynamicBatcher, items: list[int]) -> list[int]:
    return await asyncio.gather(*(batcher.submit(item) for item in items))


def run_all(batch: Callable[[list[int]], list], items: list[int], **options: Any) -> list:
    """Submit ``items`` at once to a new batcher, close it; each result or raised error."""

    async def scenario() -> list:
        batcher = DynamicBatcher(batch, **options)
        try:
            return await asyncio.gather(*(batcher.submit(item) for item in items),
                                        return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(scenario())


def test_concurrent_requests_share_a_batch_in_arrival_order_and_get_their_own_results():
    recorder = Recorder()

    results = run_all(recorder, list(range(10)), max_size=64, max_wait_s=0.05)
    assert results == [2 * i for i in range(10)]
    assert recorder.batches == [list(range(10))]


def test_requests_that_queue_while_the_slot_is_busy_form_the_next_batch():
    """With no wait at all, batching comes from the queue alone: what arrives while a batch
    runs goes together next."""
    recorder = Recorder()

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(recorder, max_size=64, max_wait_s=0)
        try:
            recorder.gate.clear()
            first = asyncio.ensure_future(batcher.submit(0))
            while not batcher._running:  # the first batch has started (and blocks)
                await asyncio.sleep(0.001)
            rest = asyncio.ensure_future(submit_all(batcher, [1, 2, 3, 4]))
            await asyncio.sleep(0.02)
            recorder.gate.set()
            return [await first, *await rest]
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) == [0, 2, 4, 6, 8]
    assert recorder.batches == [[0], [1, 2, 3, 4]]


def test_no_batch_is_larger_than_max_size():
    recorder = Recorder()

    results = run_all(recorder, list(range(10)), max_size=4, max_wait_s=0.05)
    assert results == [2 * i for i in range(10)]
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_lone_request_waits_max_wait_for_company_and_no_longer():
    recorder = Recorder()

    async def lone(wait_s: float) -> float:
        batcher = DynamicBatcher(recorder, max_size=8, max_wait_s=wait_s)
        try:
            started = time.perf_counter()
            assert await batcher.submit(21) == 42
            return time.perf_counter() - started
        finally:
            await batcher.close()

    assert 0.1 <= asyncio.run(lone(0.1)) < 2
    assert asyncio.run(lone(0)) < 0.1  # at zero, a lone request never waits


def test_requests_within_max_wait_join_the_open_batch_later_ones_start_the_next():
    recorder = Recorder()

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(recorder, max_size=8, max_wait_s=0.2)
        try:
            first = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.02)
            second = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.4)  # the first batch closed at 0.2 s
            third = asyncio.ensure_future(batcher.submit(3))
            return [await first, await second, await third]
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) == [2, 4, 6]
    assert recorder.batches == [[1, 2], [3]]


def test_an_error_returned_for_one_request_fails_only_that_request():
    def batch(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {item}") if item == 3 else item for item in items]

    results = run_all(batch, list(range(5)), max_size=8, max_wait_s=0.05)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4]
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"


def test_a_batch_that_raises_is_rerun_one_by_one_so_only_the_culprit_fails():
    calls: list[list[int]] = []

    def batch(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 3 in items:
            raise RuntimeError("item 3 breaks the whole batch")
        return items

    results = run_all(batch, list(range(5)), max_size=8, max_wait_s=0.05)
    assert results[:3] == [0, 1, 2] and results[4] == 4
    assert isinstance(results[3], RuntimeError)
    assert calls == [[0, 1, 2, 3, 4], [0], [1], [2], [3], [4]]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_mismatch():
    async def scenario() -> None:
        batcher = DynamicBatcher(lambda items: [], max_size=4)
        try:
            await batcher.submit(1)
        finally:
            await batcher.close()

    with pytest.raises(RuntimeError, match="0 results for 1 requests"):
        asyncio.run(scenario())


def test_concurrency_bounds_the_batches_running_at_once():
    running = 0
    peak = 0
    lock = threading.Lock()

    def batch(items: list[int]) -> list[int]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return items

    assert run_all(batch, list(range(8)), max_size=1, concurrency=2) == list(range(8))
    assert peak == 2


def test_a_caller_that_gives_up_is_skipped_and_the_others_are_answered():
    recorder = Recorder()

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(recorder, max_size=8, max_wait_s=0)
        try:
            recorder.gate.clear()
            first = asyncio.ensure_future(batcher.submit(0))
            while not batcher._running:
                await asyncio.sleep(0.001)
            gone = asyncio.ensure_future(batcher.submit(1))
            kept = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.01)
            gone.cancel()  # the client disconnected while queued
            recorder.gate.set()
            return [await first, await kept]
        finally:
            await batcher.close()

    assert asyncio.run(scenario()) == [0, 4]
    assert recorder.batches == [[0], [2]]


def test_close_fails_queued_requests_and_the_batcher_restarts_in_a_new_loop():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_size=1)

    async def close_with_a_queue() -> list[int | BaseException]:
        recorder.gate.clear()
        futures = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        while not batcher._running:
            await asyncio.sleep(0.001)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.01)
        recorder.gate.set()  # the running batch finishes; the queued ones never run
        await closing
        return await asyncio.gather(*futures, return_exceptions=True)

    first, *queued = asyncio.run(close_with_a_queue())
    assert first == 0
    assert all(isinstance(result, BatcherClosed) for result in queued)

    async def again() -> int:
        try:
            return await batcher.submit(5)
        finally:
            await batcher.close()

    assert asyncio.run(again()) == 10


def test_invalid_bounds_are_refused():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda items: items, max_size=0)
    with pytest.raises(ValueError):
        DynamicBatcher(lambda items: items, max_size=1, max_wait_s=-1)


def test_the_runner_gets_each_batch_with_its_items_and_decides_where_it_runs():
    """``run`` sees the batch's items and runs its work where it likes (here: on the loop)."""
    recorder = Recorder()
    seen: list[list[int]] = []

    async def on_the_loop(items: list[int], work: Callable[[], list]) -> list:
        seen.append(list(items))
        return work()

    results = run_all(recorder, [1, 2, 3], max_size=64, max_wait_s=0.05, run=on_the_loop)
    assert results == [2, 4, 6]
    assert seen == recorder.batches == [[1, 2, 3]]
