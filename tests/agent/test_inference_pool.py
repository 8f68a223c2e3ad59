"""The interpreter pool, run with real .tflite models built from numpy (no TensorFlow)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from numpy.typing import NDArray
from tflite_models import SLOW, SMALL, ConvModel, conv_model

from agent.detection.pool import InferencePool, InferencePoolError, InferenceResult
from fleet.litert import LiteRTError

Array = NDArray[np.float32]


@pytest.fixture(scope="module")
def small() -> ConvModel:
    return conv_model(SMALL, [8])


@pytest.fixture(scope="module")
def slow() -> ConvModel:
    return conv_model(SLOW, [64] * 6)  # tens of ms per invoke


def pool_of(model: bytes, size: int | None = None, queue_size: int | None = None) -> InferencePool:
    """A pool holding one model, under the key "m"."""
    pool = InferencePool(size, queue_size)
    pool.add_model("m", model)
    return pool


def wait_result(future: Future[InferenceResult]) -> InferenceResult:
    return future.result(timeout=10)


def test_results_match_numpy_from_many_threads(small: ConvModel) -> None:
    pool = pool_of(small.content, size=2, queue_size=64)
    assert pool.model_input("m").shape == SMALL and pool.capacity == 66
    rng = np.random.default_rng(3)
    inputs = [rng.random(SMALL, dtype=np.float32) for _ in range(48)]
    futures: list[Future[InferenceResult] | None] = [None] * len(inputs)

    def submit(part: int) -> None:  # three submitters race for two interpreters
        for i in range(part, len(inputs), 3):
            futures[i] = pool.try_submit("m", inputs[i])

    threads = [threading.Thread(target=submit, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for x, future in zip(inputs, futures, strict=True):
            assert future is not None
            result = wait_result(future)
            np.testing.assert_allclose(result.output, small.expected(x), atol=1e-4)
            assert 0 < result.invoke_ms < 1000
    finally:
        pool.close()


def test_full_queue_refuses_at_once_and_never_blocks(slow: ConvModel) -> None:
    pool = pool_of(slow.content, size=1, queue_size=2)
    x = np.random.default_rng(4).random(SLOW, dtype=np.float32)
    try:
        first = pool.try_submit("m", x)
        assert first is not None
        durations, accepted = [], [first]
        for _ in range(20):
            start = time.perf_counter()
            future = pool.try_submit("m", x)
            durations.append(time.perf_counter() - start)
            if future is not None:
                accepted.append(future)
        # One running + two queued at most, while the model takes tens of ms per invoke.
        assert 2 <= len(accepted) <= 4
        assert max(durations) < 0.005, f"try_submit took up to {max(durations) * 1000:.2f} ms"
        results = [wait_result(f) for f in accepted]
        assert min(r.invoke_ms for r in results) > 5  # really slow: the refusals were real
        np.testing.assert_allclose(results[0].output, slow.expected(x), rtol=1e-3, atol=1e-3)
        assert pool.try_submit("m", x) is not None  # room again once the backlog is done
    finally:
        pool.close()


def test_owners_are_served_round_robin(slow: ConvModel) -> None:
    pool = pool_of(slow.content, size=1, queue_size=8)
    x = np.zeros(SLOW, np.float32)
    finished: list[str] = []

    def done(owner: str, _: Future[InferenceResult]) -> None:
        finished.append(owner)

    try:
        busy = pool.try_submit("m", x, owner="busy")  # the worker takes this one at once
        assert busy is not None
        wait_for(lambda: busy.running() or busy.done(), 10, 0.001, what="the first job to start")
        jobs = [("busy", pool.try_submit("m", x, owner="busy")) for _ in range(4)]
        jobs.append(("calm", pool.try_submit("m", x, owner="calm")))
        assert pool.depth() == 5
        for owner, future in jobs:
            assert future is not None
            future.add_done_callback(partial(done, owner))
        for _, future in jobs:
            assert future is not None
            wait_result(future)
    finally:
        pool.close()
    assert finished == ["busy", "calm", "busy", "busy", "busy"]  # not behind the whole backlog


def test_close_cancels_queued_jobs_and_refuses_new_ones(slow: ConvModel) -> None:
    pool = pool_of(slow.content, size=1, queue_size=4)
    x = np.zeros(SLOW, np.float32)
    futures = [pool.try_submit("m", x) for _ in range(4)]
    pool.close()
    done = [f for f in futures if f is not None]
    assert len(done) == 4 and all(f.done() for f in done)
    assert any(f.cancelled() for f in done)
    with pytest.raises(InferencePoolError, match="pool is closed"):
        pool.try_submit("m", x)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((1, 32, 32, 3), np.float32), r"input must be float32 \(1, 32, 32, 1\)"),
        (np.zeros(SMALL, np.uint8), "got uint8"),
    ],
)
def test_bad_input_is_a_clear_error(small: ConvModel, x: NDArray[Any], message: str) -> None:
    pool = pool_of(small.content, size=1)
    try:
        with pytest.raises(InferencePoolError, match=message):
            pool.try_submit("m", x)
        future = pool.try_submit("m", np.zeros(SMALL, np.float32))  # still serving
        assert future is not None and wait_result(future).invoke_ms > 0
    finally:
        pool.close()


def test_bad_pool_settings_and_models(small: ConvModel) -> None:
    with pytest.raises(InferencePoolError, match="must be >= 1"):
        pool_of(small.content, size=0)
    with pytest.raises(InferencePoolError, match="must be >= 1"):
        pool_of(small.content, size=1, queue_size=0)
    pool = InferencePool(size=1)
    try:
        with pytest.raises(LiteRTError, match="cannot load model of"):
            pool.add_model("m", b"not a model" * 10)
        with pytest.raises(InferencePoolError, match="no model 'm' in the pool"):
            pool.try_submit("m", np.zeros(SMALL, np.float32))
    finally:
        pool.close()


def test_cameras_with_different_models_share_the_workers(small: ConvModel) -> None:
    other = conv_model((1, 24, 40, 1), [4, 4], seed=7)
    pool = InferencePool(size=2, queue_size=16)
    try:
        assert pool.add_model("a", small.content).shape == SMALL
        assert pool.add_model("b", other.content).shape == (1, 24, 40, 1)
        assert pool.add_model("a", b"ignored: the key is known").shape == SMALL
        rng = np.random.default_rng(5)
        jobs = []
        for i in range(12):
            key, model = ("a", small) if i % 2 else ("b", other)
            x = rng.random(pool.model_input(key).shape, dtype=np.float32)
            future = pool.try_submit(key, x, owner=key)
            assert future is not None
            jobs.append((model, x, future))
        for model, x, future in jobs:
            np.testing.assert_allclose(wait_result(future).output, model.expected(x), atol=1e-4)
    finally:
        pool.close()


def test_default_size_is_the_core_count(small: ConvModel) -> None:
    pool = pool_of(small.content)
    try:
        assert pool.size == (os.cpu_count() or 1) and pool.queue_size == 4 * pool.size
    finally:
        pool.close()
