"""Dynamic batching: one thread owns the device and runs same-model, same-size frames together.

Handler threads colour-convert frames and :meth:`Batcher.submit` them. The batcher takes the
oldest waiting frame and, while other frames are being prepared, waits up to the batch window for
more frames of the same pipeline and the same size (only equal shapes are stacked), up to
``max_batch``; one back-end call (:meth:`Pipeline.infer_frames`) runs them all. A frame alone (or
one above the tiling budget) runs exactly as :meth:`Pipeline.process` does. At most ``capacity``
frames wait; beyond that :class:`QueueFull` (RESOURCE_EXHAUSTED). A frame whose request expired
or was cancelled is dropped before it reaches the device.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from typing import Callable

import numpy as np

from hdrlift.engine.pipeline import Pipeline
from hdrlift.engine.server.errors import Cancelled, Expired, QueueFull, ShuttingDown
from hdrlift.engine.server.prometheus import Metrics
from hdrlift.engine.tiling import needs_tiling


class WorkItem:
    """One prepared frame (network input domain) waiting for the device."""

    __slots__ = ("pipeline", "net_in", "deadline", "cancelled", "future", "key", "batch_size")

    def __init__(self, pipeline: Pipeline, net_in: np.ndarray, deadline: float | None):
        self.pipeline = pipeline
        self.net_in = net_in
        self.deadline = deadline  # time.monotonic() value, or None
        self.cancelled = threading.Event()
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        h, w = net_in.shape[:2]
        batchable = not needs_tiling(pipeline.backend, h, w, pipeline.max_pixels)
        self.key = (id(pipeline), h, w) if batchable else None
        self.batch_size = 1

    def dead(self) -> BaseException | None:
        if self.cancelled.is_set():
            return Cancelled("request cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return Expired("deadline expired before the frame reached the device")
        return None


class Batcher:
    """One device thread; gathers same-shape, same-model frames into one back-end call."""

    def __init__(self, capacity: int, max_batch: int, window_s: float, metrics: Metrics):
        self.capacity = capacity
        self.max_batch = max_batch
        self.window_s = window_s
        self.metrics = metrics
        self._pending: collections.deque[WorkItem] = collections.deque()
        self._cond = threading.Condition()
        self._preparing = 0
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def preparing(self, delta: int) -> None:
        """Handlers announce frames they are decoding, so the batcher knows more may come."""
        with self._cond:
            self._preparing += delta
            self._cond.notify_all()

    def submit(self, item: WorkItem, wait: Callable[[], bool] | None = None) -> WorkItem:
        """Queue ``item`` for the device. When the queue is full: QueueFull at once, or, with
        ``wait``, wait for room while ``wait()`` holds (a stream's reader: the client is still
        there), which holds the stream's sender back through gRPC's flow control instead of
        refusing it."""
        with self._cond:
            while True:
                if self._closed:
                    raise ShuttingDown("server is shutting down")
                if len(self._pending) < self.capacity:
                    break
                if wait is None:
                    raise QueueFull(f"{len(self._pending)} frames are waiting for the device (limit "
                                    f"{self.capacity}); retry later or use another server")
                if not wait():
                    raise Cancelled("request cancelled while waiting for room in the device queue")
                self._cond.wait(0.1)
            self._pending.append(item)
            self._cond.notify_all()
        return item

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take_matching(self, batch: list[WorkItem]) -> None:
        key = batch[0].key
        keep = collections.deque()
        while self._pending and len(batch) < self.max_batch:
            it = self._pending.popleft()
            if it.key == key:
                batch.append(it)
            else:
                keep.append(it)
        keep.extend(self._pending)
        self._pending = keep

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                first = self._pending.popleft()
                self._busy = True
                batch = [first]
                if first.key is not None and self.max_batch > 1 and first.dead() is None:
                    end = time.monotonic() + self.window_s
                    while True:
                        self._take_matching(batch)
                        left = end - time.monotonic()
                        if len(batch) >= self.max_batch or left <= 0 or self._preparing <= 0 or self._closed:
                            break
                        self._cond.wait(left)
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, batch: list[WorkItem]) -> None:
        live = []
        for it in batch:
            err = it.dead()
            if err is not None:
                it.future.set_exception(err)
            else:
                live.append(it)
        if not live:
            return
        try:
            # a frame alone is bit-identical to Pipeline.process
            outs = live[0].pipeline.infer_frames([it.net_in for it in live])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for it in live:
                it.future.set_exception(exc)
            return
        self.metrics.batch_done(len(live))
        for it, out in zip(live, outs):
            it.batch_size = len(live)
            it.future.set_result(out)


