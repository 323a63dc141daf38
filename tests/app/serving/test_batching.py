"""The micro-batcher on its own, and batching in the service."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.serving.batching import MicroBatcher, PassThrough, QueueFullError
from app.settings import Settings


class Recorder:
    """A batch function that doubles its rows and records every call it gets."""

    def __init__(self, fail_on: float | None = None, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[Hashable, int]] = []
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, key: Hashable, rows: np.ndarray) -> dict[str, np.ndarray]:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append((key, len(rows)))
        if self.fail_on is not None and (rows == self.fail_on).any():
            raise ValueError("poisoned row")
        return {"doubled": rows * 2, "sums": rows.sum(axis=1)}


def run(coro):
    return asyncio.run(coro)


def test_concurrent_jobs_share_one_call_and_get_their_own_rows() -> None:
    fn = Recorder()

    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=64, max_delay_us=20_000, queue_size=100, on_batch=sizes.append)
        batcher.start()
        inputs = [np.full((i % 3 + 1, 2), float(i), np.float32) for i in range(10)]
        outputs = await asyncio.gather(*(batcher.submit("k", x) for x in inputs))
        await batcher.stop()
        return inputs, outputs

    inputs, outputs = run(main())
    for x, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out["doubled"], x * 2)
        np.testing.assert_array_equal(out["sums"], x.sum(axis=1))
    assert sum(n for _, n in fn.calls) == sum(len(x) for x in inputs) == sum(sizes)
    assert len(fn.calls) < 10 and len(outputs) == 10  # merged


def test_keys_are_never_mixed_and_batches_stay_under_the_limit() -> None:
    fn = Recorder()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=5, max_delay_us=20_000, queue_size=100)
        batcher.start()
        jobs = [batcher.submit(("k", i % 2), np.full((2, 1), float(i % 2), np.float32)) for i in range(12)]
        outputs = await asyncio.gather(*jobs)
        await batcher.stop()
        return outputs

    outputs = run(main())
    for i, out in enumerate(outputs):
        assert (out["doubled"] == 2.0 * (i % 2)).all()
    assert all(n <= 5 for _, n in fn.calls)
    assert sorted(sum(n for k, n in fn.calls if k == key) for key in {k for k, _ in fn.calls}) == [12, 12]


def test_a_full_queue_refuses_at_once() -> None:
    gate = threading.Event()
    fn = Recorder(gate=gate)

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=1, max_delay_us=0, queue_size=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("k", np.ones((1, 1), np.float32)))
        await asyncio.sleep(0.05)  # the worker holds `first`, blocked on the gate
        queued = [asyncio.ensure_future(batcher.submit("k", np.ones((1, 1), np.float32))) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match="t: 2 requests already queued"):
            await batcher.submit("k", np.ones((1, 1), np.float32))
        gate.set()
        answered = await asyncio.gather(first, *queued)
        await batcher.stop()
        return answered

    assert len(run(main())) == 3  # the queued ones are answered once the worker is free


def test_one_bad_job_fails_alone() -> None:
    fn = Recorder(fail_on=-1.0)

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=64, max_delay_us=20_000, queue_size=100)
        batcher.start()
        values = [1.0, -1.0, 3.0]
        results = await asyncio.gather(
            *(batcher.submit("k", np.full((1, 1), v, np.float32)) for v in values), return_exceptions=True
        )
        await batcher.stop()
        return results

    good, bad, other = run(main())
    assert isinstance(bad, ValueError) and str(bad) == "poisoned row"
    assert good["doubled"][0, 0] == 2.0 and other["doubled"][0, 0] == 6.0
    assert fn.calls[0] == ("k", 3)  # tried together first, then one by one


def test_concurrent_requests_are_batched_and_answer_as_alone(repository: Path, digit_arrays) -> None:
    settings = Settings(model_repository=repository, batch_max_delay_us=50_000)
    with TestClient(create_app(settings)) as client:
        alone = [
            client.post("/v1/score?importance_samples=8", json={"arrays": [a.tolist()]}).json() for a in digit_arrays
        ]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(
                lambda a: client.post("/v1/score?importance_samples=8", json={"arrays": [a.tolist()]}).json(), digit_arrays
            ))  # fmt: skip
        metrics = client.get("/metrics").text
    assert together == alone
    (family,) = (f for f in text_string_to_metric_families(metrics) if f.name == "vaeserve_batch_size")
    score = [s for s in family.samples if s.labels.get("operation") == "score"]
    ones = sum(s.value for s in score if s.name.endswith("_bucket") and s.labels["le"] == "1.0")
    total = sum(s.value for s in score if s.name.endswith("_count"))
    assert ones < total  # some requests did share a call


def test_batching_off_serves_the_same_answers(repository: Path, digit_arrays, client: TestClient) -> None:
    with TestClient(create_app(Settings(model_repository=repository, default_model="digits:1", batching=False))) as off:
        assert all(isinstance(e, PassThrough) for e in off.app.state.registry.default.executors.values())
        for path in ("/v1/encode", "/v1/score?importance_samples=4", "/v1/reconstruct"):
            body = {"arrays": digit_arrays.tolist()}
            assert off.post(path, json=body).json() == client.post(path, json=body).json()
        assert off.get("/v1/samples?n=3&seed=2").content == client.get("/v1/samples?n=3&seed=2").content


def test_a_stopped_batcher_still_answers_late_callers() -> None:
    fn = Recorder()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=8, max_delay_us=1000, queue_size=10)
        batcher.start()
        await batcher.submit("k", np.ones((1, 1), np.float32))
        await batcher.stop()
        # A request that began before a reload may still call the old model's batcher.
        return await asyncio.wait_for(batcher.submit("k", np.full((1, 1), 3.0, np.float32)), timeout=5)

    assert run(main())["doubled"][0, 0] == 6.0


def test_big_jobs_are_split_into_full_batches() -> None:
    fn = Recorder()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch_size=4, max_delay_us=0, queue_size=10)
        batcher.start()
        rows = np.arange(10, dtype=np.float32).reshape(10, 1)
        out = await batcher.submit("k", rows)
        await batcher.stop()
        return rows, out

    rows, out = run(main())
    np.testing.assert_array_equal(out["doubled"], rows * 2)
    np.testing.assert_array_equal(out["sums"], rows[:, 0])
    assert sorted(n for _, n in fn.calls) == [2, 4, 4]
