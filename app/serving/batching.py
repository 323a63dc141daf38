"""Dynamic micro-batching: concurrent requests to one model become one ONNX Runtime call.

Both executors here take `submit(key, rows)` and answer with the function's named outputs
for those rows: `MicroBatcher` gathers, `PassThrough` (batching off) runs each call alone in
a worker thread. Either way ONNX Runtime never runs on the event loop.

A `MicroBatcher` owns a bounded queue and one worker task. The worker takes the oldest job,
then keeps gathering jobs with the same key (the same operation and parameters) until the
batch holds `max_batch_size` rows or `max_delay_us` has passed since it started, runs the
function once on the concatenated rows in its own thread (never on the event loop), and
hands each job its slice of the outputs. A full queue refuses at once (`QueueFullError`),
so latency cannot grow without bound. If a batch fails, each of its jobs is retried alone,
so one bad request fails alone (as in Triton's dynamic batcher).

With tracing on (app/tracing.py), each job's wait is a `vaeserve.queue` span in its
request's trace, each batch a `vaeserve.batch` span linked to every request it served, and
each call of the function a `vaeserve.model` span inside it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

from app import tracing

log = logging.getLogger(__name__)

Outputs = dict[str, NDArray[np.generic]]  # each (N, ...), N the rows given
BatchFn = Callable[[Hashable, NDArray[np.float32]], Outputs]


class QueueFullError(RuntimeError):
    """The batcher's queue is full: the caller should answer 503 and come back later."""


@dataclass
class _Job:
    key: Hashable
    rows: NDArray[np.float32]
    future: asyncio.Future[Outputs]
    span: trace.Span  # vaeserve.queue: from submit until its batch starts
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers calls of `fn(key, rows)` with equal keys into one call on stacked rows."""

    def __init__(
        self,
        name: str,
        fn: BatchFn,
        max_batch_size: int,
        max_delay_us: int,
        queue_size: int,
        on_batch: Callable[[int], None] | None = None,
        attributes: Attributes = None,
    ) -> None:
        """`attributes` go on every span of this batcher (tracing.MODEL, tracing.OPERATION)."""
        self.name = name
        self._attributes = dict(attributes or {})
        self._on_batch = on_batch
        self._fn = fn
        self._max_rows = max_batch_size
        self._max_delay = max_delay_us / 1e6
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._held: deque[_Job] = deque()  # taken from the queue, waiting for a batch of their key
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._worker: asyncio.Task[None] | None = None
        self._busy = False  # a batch has been taken and is not answered yet
        self._closing = False

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker and its thread.

        From now on `submit` runs each call on its own, so a request that still holds this
        batcher (e.g. one that began before a reload) is answered, never stranded.
        """
        self._closing = True
        while not self._queue.empty() or self._held or self._busy:
            await asyncio.sleep(0.001)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    async def submit(self, key: Hashable, rows: NDArray[np.float32]) -> Outputs:
        """Queue `rows` (N, ...) and wait for the function's outputs for them, each (N, ...).

        More rows than a batch holds are split into full batches, so no single call (and so
        no ONNX Runtime memory arena) grows past `max_batch_size` rows.
        """
        if len(rows) > self._max_rows:
            parts = [rows[i : i + self._max_rows] for i in range(0, len(rows), self._max_rows)]
            results = await asyncio.gather(*(self.submit(key, part) for part in parts))
            return {name: np.concatenate([result[name] for result in results]) for name in results[0]}
        loop = asyncio.get_running_loop()
        if self._closing:
            return await loop.run_in_executor(None, self._fn, key, rows)
        job = _Job(key, rows, loop.create_future(), tracing.start_span("vaeserve.queue", self._attributes))
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            job.span.end()
            raise QueueFullError(f"{self.name}: {self._queue.maxsize} requests already queued") from None
        return await job.future

    def _take(self, key: Hashable, batch: list[_Job], rows: int) -> int:
        """Move queued jobs of `key` into the batch while they fit; hold the others."""
        while rows < self._max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if job.key == key and rows + len(job.rows) <= self._max_rows:
                batch.append(job)
                rows += len(job.rows)
            else:
                self._held.append(job)
                if job.key == key:  # it would overflow this batch: run what we have
                    break
        return rows

    async def _gather(self) -> list[_Job]:
        """The oldest job and the jobs of its key that are waiting, or arrive within the delay.

        Under load, jobs pile up while the previous batch runs, so batches form without any
        waiting; the delay only helps when requests trickle in. (Under uvloop, sleeps below
        1 ms round down to none.)
        """
        first = self._held.popleft() if self._held else await self._queue.get()
        self._busy = True  # from here on, jobs live in this batch: stop() must wait for them
        batch, rows = [first], len(first.rows)
        for held in list(self._held):  # held jobs of this key go first, in order
            if held.key == first.key and rows + len(held.rows) <= self._max_rows:
                self._held.remove(held)
                batch.append(held)
                rows += len(held.rows)
        rows = self._take(first.key, batch, rows)
        if self._max_delay > 0 and rows < self._max_rows:
            await asyncio.sleep(self._max_delay)
            self._take(first.key, batch, rows)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            try:
                for job in batch:
                    if job.future.done():  # its caller has gone: no batch will end its span
                        job.span.end()
                await self._answer([job for job in batch if not job.future.done()])
            finally:
                self._busy = False

    async def _answer(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        batch = self._batch_span(jobs)
        try:
            context = trace.set_span_in_context(batch) if batch.is_recording() else None
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._call, jobs, context)
        except Exception:
            log.exception("batcher %s: a batch of %d jobs failed; retrying them one by one", self.name, len(jobs))
            outputs = None
        finally:
            batch.end()
        if outputs is None:
            await self._one_by_one(jobs)
            return
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            if not job.future.done():
                job.future.set_result({name: out[start:end] for name, out in outputs.items()})
            start = end

    def _batch_span(self, jobs: Sequence[_Job]) -> trace.Span:
        """The batch's span, a child of the request that opened it and linked to all it serves;
        each job's queue span ends here, linked back to it."""
        if not jobs[0].span.is_recording():  # tracing off: no-op spans, skip the bookkeeping
            return trace.INVALID_SPAN
        rows, now = sum(len(job.rows) for job in jobs), time.time_ns()
        batch = tracing.tracer.start_span(
            "vaeserve.batch", context=trace.set_span_in_context(jobs[0].span),
            links=[trace.Link(job.span.get_span_context()) for job in jobs],
            attributes={**self._attributes, tracing.BATCH_ROWS: rows, tracing.BATCH_REQUESTS: len(jobs)},
            start_time=now,
        )  # fmt: skip
        for job in jobs:
            job.span.set_attributes({tracing.ROWS: len(job.rows), tracing.BATCH_ROWS: rows})
            job.span.add_link(batch.get_span_context())
            job.span.end(end_time=now)  # the wait ends as the batch starts
        return batch

    def _call(self, batch: Sequence[_Job], context: Context | None = None) -> Outputs | None:
        if any(job.rows.shape[1:] != batch[0].rows.shape[1:] for job in batch):
            return None  # cannot be stacked: run them alone
        rows = batch[0].rows if len(batch) == 1 else np.concatenate([job.rows for job in batch])
        if context is None:  # tracing off
            outputs = self._fn(batch[0].key, rows)
        else:
            with tracing.span("vaeserve.model", {**self._attributes, tracing.BATCH_ROWS: len(rows)}, context):
                outputs = self._fn(batch[0].key, rows)
        if self._on_batch is not None:
            self._on_batch(len(rows))
        return outputs

    async def _one_by_one(self, jobs: Sequence[_Job]) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            try:
                outputs = await loop.run_in_executor(self._executor, self._fn, job.key, job.rows)
            except Exception as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(outputs)


class PassThrough:
    """The executor when batching is off: each call runs alone in the event loop's thread pool.

    A cancelled caller (its deadline passed) stops waiting at once, as with `MicroBatcher`;
    the call already running finishes in its thread. (Starlette's run_in_threadpool would
    hold the caller until the thread is done, so its 504 would wait for the work.)
    """

    def __init__(self, fn: BatchFn, attributes: Attributes = None) -> None:
        self._fn = fn
        self._attributes = dict(attributes or {})

    async def submit(self, key: Hashable, rows: NDArray[np.float32]) -> Outputs:
        loop = asyncio.get_running_loop()
        if not tracing.active():
            return await loop.run_in_executor(None, self._fn, key, rows)
        with tracing.span("vaeserve.model", {**self._attributes, tracing.BATCH_ROWS: len(rows)}):
            return await loop.run_in_executor(None, contextvars.copy_context().run, self._fn, key, rows)

    async def stop(self) -> None:
        pass
