"""Dynamic batching: concurrent callers, one batched call (Triton's dynamic batcher, in asyncio).

A request that arrives while the model is busy would otherwise wait its turn and then pay, alone,
every per-call cost again: a hop to a worker thread, a forward pass's fixed overhead. Here it
waits in a queue instead; when a worker slot frees up, everything queued (up to ``max_size``)
goes in ONE call of the batch function, in arrival order. With ``max_wait_s`` above zero the
batcher also holds a batch open for that long after its first request arrived, so that requests
arriving close together share a call even when a slot is free (Triton's max queue delay); at zero
it never delays a request, and batches form only from what queued while the slots were busy.

Errors stay with their own request: the batch function may return an exception in a request's
slot, and if it raises instead, each request of that batch is run again alone, so the one that
raises gets the error and the others their results.

Framework-free (asyncio only); the caller chooses where each batch runs (``run``): in a worker
thread, so that the event loop keeps answering while the model works and a web framework's own
thread limiter can bound all CPU work, or on the event loop itself where the batch is so small
that the hop to a thread and back would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The batch function: requests in arrival order -> one result (or exception) per request.
BatchFunction = Callable[[list[T]], Sequence[R | BaseException]]
Outcomes = list[R | BaseException]
# Where a batch runs: given its items and its work (a call that computes the outcomes), the
# outcomes (by default: the work in a worker thread).
Runner = Callable[[list[T], Callable[[], Outcomes]], Awaitable[Outcomes]]

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher shut down before this request ran."""


@dataclass
class _Pending(Generic[T, R]):
    item: T
    arrived: float
    future: asyncio.Future[R] = field(repr=False)


class DynamicBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` -> that item's result, computed in a shared batch.

    At most ``concurrency`` batches run at once; the batcher starts on the first ``submit`` in
    the running event loop and stops with ``close`` (after which a ``submit`` starts it again,
    possibly in another loop).
    """

    def __init__(
        self,
        run_batch: BatchFunction[T, R],
        *,
        max_size: int,
        max_wait_s: float = 0.0,
        concurrency: int = 1,
        run: Runner[T, R] | None = None,
    ) -> None:
        if max_size < 1 or concurrency < 1 or max_wait_s < 0:
            raise ValueError("max_size and concurrency must be >= 1, max_wait_s >= 0")
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.concurrency = concurrency
        self._runner: Runner[T, R] = run or _in_thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending[T, R]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its own result (or exception)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop after one that never closed us
            self._start(loop)
        assert self._queue is not None
        pending: _Pending[T, R] = _Pending(item, loop.time(), loop.create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    async def close(self) -> None:
        """Stop collecting, let running batches finish, and fail requests still queued."""
        if self._collector is None:
            return
        self._collector.cancel()
        await asyncio.gather(self._collector, *self._running, return_exceptions=True)
        assert self._queue is not None
        while not self._queue.empty():
            _fail([self._queue.get_nowait()])
        self._loop = self._queue = self._slots = self._collector = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._collector = asyncio.create_task(self._collect(), name="dynamic-batcher")

    async def _collect(self) -> None:
        """Forever: wait for a free slot, then for a batch, and start it without awaiting it."""
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            batch: list[_Pending[T, R]] = []
            try:
                await self._fill(batch)
            except BaseException:  # closed while collecting: these requests will never run
                self._slots.release()
                _fail(batch)
                raise
            task = asyncio.create_task(self._dispatch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _fill(self, batch: list[_Pending[T, R]]) -> None:
        """The first live request, then whatever else is queued or arrives before the first
        request has waited ``max_wait_s``, up to ``max_size``."""
        assert self._queue is not None and self._loop is not None
        queue = self._queue
        while not batch:
            first = await queue.get()
            if not first.future.done():  # a caller that gave up (client gone) is skipped
                batch.append(first)
        deadline = batch[0].arrived + self.max_wait_s
        while len(batch) < self.max_size:
            if queue.empty():
                left = deadline - self._loop.time()
                if left <= 0:
                    return
                try:
                    async with asyncio.timeout(left):
                        pending = await queue.get()
                except TimeoutError:
                    return
            else:
                pending = queue.get_nowait()
            if not pending.future.done():
                batch.append(pending)

    async def _dispatch(self, batch: list[_Pending[T, R]]) -> None:
        assert self._slots is not None
        try:
            items = [p.item for p in batch]
            outcomes = await self._runner(items, partial(self._run, items))
        except Exception as error:  # the runner itself failed (not the batch function)
            outcomes = [error] * len(batch)
        except BaseException:  # cancelled: the loop is going away
            _fail(batch)
            raise
        finally:
            self._slots.release()
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    def _run(self, items: list[T]) -> Outcomes:
        """The batch function on all items; if it raises, on each item alone."""
        try:
            return self._checked(items)
        except Exception:
            if len(items) == 1:
                raise
            log.warning("a batch of %d failed; running its requests one by one", len(items),
                        exc_info=True)
        outcomes: Outcomes = []
        for item in items:
            try:
                outcomes.extend(self._checked([item]))
            except Exception as error:
                outcomes.append(error)
        return outcomes

    def _checked(self, items: list[T]) -> Outcomes:
        outcomes = list(self._run_batch(items))
        if len(outcomes) != len(items):
            raise RuntimeError(f"the batch function returned {len(outcomes)} results for "
                               f"{len(items)} requests")
        return outcomes


async def _in_thread(items: list[T], work: Callable[[], Outcomes]) -> Outcomes:
    return await asyncio.to_thread(work)


def _fail(batch: list[_Pending[T, R]]) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(BatcherClosed("the batcher closed before this ran"))
