"""A pool of TFLite interpreters shared by all of an agent's cameras.

Interpreters are not thread-safe, so each worker thread owns its own, one per model: cameras may
run different models (each trained on its own footage), and a worker loads a model the first
time it gets a job for it. Jobs wait in a bounded queue
served round robin by owner (a camera), so one owner's backlog delays another's job by at most a
job each; `try_submit` never blocks: when the queue is full it returns None and the caller counts
a skip, so a slow model can never hold up ingest or recording.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fleet.litert import Interpreter, LiteRTError, load_interpreter

ModelSource = str | os.PathLike[str] | bytes


class InferencePoolError(ValueError):
    """A pool that cannot be made as asked, or a job it cannot run."""


@dataclass(frozen=True, slots=True)
class InferenceResult:
    output: NDArray[Any]  # the model's first output tensor (a copy)
    invoke_ms: float  # Interpreter.invoke alone, on the worker's thread


@dataclass(frozen=True, slots=True)
class ModelInput:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True, slots=True)
class _Job:
    model: str
    x: NDArray[Any]
    future: Future[InferenceResult]


@dataclass(frozen=True, slots=True)
class _Model:
    source: ModelSource
    input: ModelInput


class InferencePool:
    def __init__(self, size: int | None = None, queue_size: int | None = None) -> None:
        """`size` worker threads (default: cores) and a queue of `queue_size` jobs (default: four
        per worker, so the ROIs of a frame fit in at once)."""
        size = (os.cpu_count() or 1) if size is None else size
        queue_size = 4 * size if queue_size is None else queue_size
        if size < 1 or queue_size < 1:
            raise InferencePoolError(f"size and queue_size must be >= 1, got {size}, {queue_size}")
        self.size, self.queue_size = size, queue_size
        self._models: dict[str, _Model] = {}
        self._queues: dict[str, deque[_Job]] = {}  # by owner, in serving order
        self._queued = 0
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"inference-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def add_model(self, key: str, model: ModelSource) -> ModelInput:
        """Make `model` available under `key` (a content hash, say); loaded once here so a bad
        model fails this call, not a worker thread. Adding a key again is a no-op."""
        with self._ready:
            known = self._models.get(key)
        if known is not None:
            return known.input
        detail = load_interpreter(model).get_input_details()[0]
        entry = _Model(
            model,
            ModelInput(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])),
        )
        with self._ready:
            self._models.setdefault(key, entry)
        return entry.input

    def model_input(self, key: str) -> ModelInput:
        with self._ready:
            entry = self._models.get(key)
        if entry is None:
            raise InferencePoolError(f"no model {key!r} in the pool")
        return entry.input

    def ensure_queue(self, jobs: int) -> None:
        """Grow the queue to hold at least `jobs` (say, a frame's crops of every camera), so
        cameras are held back by their share, not by a queue sized for fewer of them."""
        with self._ready:
            self.queue_size = max(self.queue_size, jobs)

    @property
    def capacity(self) -> int:
        """Jobs the pool holds at most: one running per worker plus a full queue."""
        return self.size + self.queue_size

    def depth(self) -> int:
        """Jobs waiting for a worker now."""
        with self._ready:
            return self._queued

    def try_submit(
        self, model: str, x: NDArray[Any], owner: str = ""
    ) -> Future[InferenceResult] | None:
        """Queue one input tensor of `model` for `owner`; None, at once, when the queue is full."""
        expected = self.model_input(model)
        if x.shape != expected.shape or x.dtype != expected.dtype:
            raise InferencePoolError(
                f"input must be {expected.dtype} {expected.shape}, got {x.dtype} {x.shape}"
            )
        with self._ready:
            if self._closed:
                raise InferencePoolError("pool is closed")
            if self._queued >= self.queue_size:
                return None
            future: Future[InferenceResult] = Future()
            self._queues.setdefault(owner, deque()).append(_Job(model, x, future))
            self._queued += 1
            self._ready.notify()
            return future

    def close(self) -> None:
        """Stop the workers after the jobs they are running; queued jobs are cancelled."""
        with self._ready:
            self._closed = True
            abandoned = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            self._queued = 0
            self._ready.notify_all()
        for job in abandoned:
            job.future.cancel()
        for thread in self._threads:
            if thread is not threading.current_thread():  # closed from a result callback
                thread.join()

    def _take(self) -> _Job | None:
        with self._ready:
            self._ready.wait_for(lambda: self._queued or self._closed)
            if self._closed:
                return None
            owner = next(iter(self._queues))
            queue = self._queues.pop(owner)
            job = queue.popleft()
            if queue:  # back in at the end: the other owners go first
                self._queues[owner] = queue
            self._queued -= 1
            return job

    def _run(self) -> None:
        interpreters: dict[str, tuple[Interpreter, int, int]] = {}  # this thread's own
        while (job := self._take()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                if job.model not in interpreters:
                    with self._ready:
                        source = self._models[job.model].source
                    it = load_interpreter(source)
                    indices = (it.get_input_details()[0]["index"],
                               it.get_output_details()[0]["index"])  # fmt: skip
                    interpreters[job.model] = (it, *indices)
                interpreter, x_index, y_index = interpreters[job.model]
                interpreter.set_tensor(x_index, job.x)
                start = time.perf_counter()
                interpreter.invoke()
                invoke_ms = (time.perf_counter() - start) * 1000
                output = interpreter.get_tensor(y_index).copy()
            except (ValueError, RuntimeError) as exc:  # what the runtime raises for a failed op
                job.future.set_exception(LiteRTError(f"inference failed: {exc}"))
            else:
                job.future.set_result(InferenceResult(output, invoke_ms))
