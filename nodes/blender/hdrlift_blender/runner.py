"""A whole shot through an hdrlift server into a cached EXR sequence, without ``bpy``.

:class:`ShotRun` is the work behind the shot operator, kept free of Blender so the same code runs
from the modal operator, a blocking call (scripts, farm jobs, tests) or anything else:

* the caller's thread decodes frames (``decode(frame)`` -> top-first H x W x 4 RGBA float32 and
  the server's input space). In Blender that must be the main thread: ``bpy`` is not thread-safe.
  A decoded frame whose EXR is already in the cache with the same content hash is skipped;
* one worker thread streams the other frames through ``Client.reconstruct_frames`` (ordered, a
  window of frames in flight) and hands each result to a small pool of writer threads
  (:func:`bridge.write_exr`: temporary name, then rename; zlib runs outside the GIL, and EXR
  compression is the client's largest cost), so a cancelled or failed run leaves only whole frames;
* :meth:`ShotRun.cancel` (Esc) stops feeding, closes the connection (the frame being computed
  is abandoned at once, not waited for) and ends the worker; rerunning does the missing frames.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import queue
import threading
from typing import Callable

import numpy as np

from . import bridge

_END = object()


class ShotRun:
    """Reconstruct ``frames`` (frame numbers, also the EXR numbers) into
    ``folder/<stem>.####.exr``. ``client`` is an open ``hdrlift.plugin.Client``; ``attributes``
    go into every EXR header (with the frame's content hash); ``on_frame(frame)`` is called on a
    writer thread after each EXR is written."""

    def __init__(self, frames: list[int], decode: Callable[[int], tuple[np.ndarray, str]], *, client, folder: str,
                 stem: str, model: str, output_space: str, attributes: dict | None = None, window: int = 4,
                 on_frame: Callable[[int], None] | None = None, writers: int | None = None):
        self.frames = list(frames)
        self.decode = decode
        self.client = client
        self.folder = folder
        self.stem = stem
        self.model = model
        self.output_space = output_space
        self.attributes = dict(attributes or {})
        self.window = max(1, int(window))
        self.on_frame = on_frame
        self.writers = max(1, int(writers or min(4, os.cpu_count() or 1)))
        self.queue: queue.Queue = queue.Queue(maxsize=self.window)
        self.cancelled = threading.Event()
        self.finished = threading.Event()  # the worker has ended (all written, failed or cancelled)
        self.error: str | None = None
        self.written: list[int] = []  # frames reconstructed and written by this run
        self.cached: list[int] = []  # frames whose EXR was already there for the same input
        self._next = 0
        self._input_closed = False
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- names
    def path(self, frame: int) -> str:
        return os.path.join(self.folder, f"{self.stem}.{frame:04d}.exr")

    @property
    def total(self) -> int:
        return len(self.frames)

    @property
    def done(self) -> int:
        """Frames finished so far: written now or found in the cache."""
        return len(self.written) + len(self.cached)

    @property
    def n_written(self) -> int:
        return len(self.written)

    @property
    def n_cached(self) -> int:
        return len(self.cached)

    @property
    def fed_all(self) -> bool:
        return self._input_closed

    def is_cached(self, frame: int, digest: str) -> bool:
        attrs = bridge.read_exr_strings(self.path(frame))
        return bool(attrs) and attrs.get(bridge.HASH_ATTR) == digest and \
            attrs.get(bridge.SETTINGS_ATTR) == self.attributes.get(bridge.SETTINGS_ATTR)

    # -- life cycle
    def start(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        bridge.remove_stale_temporaries(self.folder)
        self._worker = threading.Thread(target=self._work, name="hdrlift-shot", daemon=True)
        self._worker.start()

    def feed(self, block: bool = True) -> bool:
        """Decode the next frame and hand it to the worker (the caller's thread; Blender's main
        thread). Returns False once every frame is fed (or the run ended). With ``block`` False
        it returns at once when the worker's queue is full."""
        if self._input_closed:
            return False
        if self.cancelled.is_set() or self.finished.is_set() or self._next >= len(self.frames):
            self._close_input()
            return False
        if not block and self.queue.full():
            return True
        frame = self.frames[self._next]
        try:
            rgba, space = self.decode(frame)
            digest = bridge.frame_hash(rgba, space)
        except Exception as exc:  # noqa: BLE001 - a decode failure ends the run with its one line
            self._fail(bridge.one_line(exc))
            return False
        self._next += 1
        if self.is_cached(frame, digest):
            self.cached.append(frame)
            return True
        item = (frame, rgba, space, digest)
        while True:  # wait for room, unless the run ends meanwhile
            if self.cancelled.is_set() or self.finished.is_set():
                self._close_input()
                return False
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def run(self) -> "ShotRun":
        """Blocking: start, feed every frame, wait for the worker. Check ``.error``/``.cancelled``."""
        if self._worker is None:
            self.start()
        while self.feed(block=True):
            pass
        self.finished.wait()
        return self

    def cancel(self) -> None:
        """Stop now (any thread): nothing more is sent or written; whole frames stay."""
        self.cancelled.set()
        self._close_input()
        try:
            self.client.close()  # ends the open stream at once: no waiting for a slow frame
        except Exception:  # noqa: BLE001 - closing twice or a dead channel
            pass

    # -- internals
    def _fail(self, message: str) -> None:
        with self._lock:
            if self.error is None:
                self.error = message
        self.cancelled.set()
        self._close_input()
        if self._worker is None:
            self.finished.set()

    def _close_input(self) -> None:
        """Send the end marker. After a cancel or a failure, frames still queued are dropped;
        otherwise the marker waits behind them (unless the worker has ended)."""
        if self._input_closed:
            return
        self._input_closed = True
        while True:
            try:
                self.queue.put(_END, timeout=0.2)
                return
            except queue.Full:
                if self.cancelled.is_set() or self.finished.is_set():
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass

    def _write(self, slots, frame: int, res, rgba: np.ndarray, digest: str) -> None:
        try:
            if self.cancelled.is_set():  # cancelled or failed: nothing more is written
                return
            attrs = {**self.attributes, bridge.HASH_ATTR: digest, "hdrlift:frame": int(frame)}
            bridge.write_exr(self.path(frame), res.hdr, np.ascontiguousarray(rgba[..., 3]), res.mask, attrs)
            with self._lock:
                self.written.append(frame)
            if self.on_frame is not None:
                self.on_frame(frame)
        finally:
            slots.release()

    def _work(self) -> None:
        sent: collections.deque = collections.deque()
        try:
            first = self.queue.get()
            if first is _END:
                return
            space = first[2]

            def frames():
                item = first
                while item is not _END:
                    if self.cancelled.is_set():
                        return
                    if item[2] != space:
                        raise bridge.BridgeError(f"frame {item[0]} decodes as {item[2]}, earlier frames as {space} "
                                                 "(8-bit and float files mixed in one shot)")
                    sent.append(item)
                    yield item[1][..., :3]
                    item = self.queue.get()

            results = self.client.reconstruct_frames(frames(), model=self.model or None, input_space=space,
                                                     output_space=self.output_space, mask=True, window=self.window)
            slots = threading.BoundedSemaphore(self.writers * 2)  # results waiting for a writer
            with concurrent.futures.ThreadPoolExecutor(self.writers, thread_name_prefix="hdrlift-exr") as pool:
                pending = []
                for res in results:
                    if self.cancelled.is_set():
                        break
                    frame, rgba, _, digest = sent.popleft()
                    slots.acquire()
                    pending.append(pool.submit(self._write, slots, frame, res, rgba, digest))
                    while pending and pending[0].done():
                        pending.pop(0).result()  # a write error ends the run with its message
                for p in pending:
                    p.result()
        except BaseException as exc:  # noqa: BLE001 - reported as one line, unless we cancelled
            with self._lock:
                if self.error is None and not self.cancelled.is_set():
                    self.error = bridge.one_line(exc, getattr(self.client, "servers", ""))
        finally:
            self.finished.set()


class ServerJobRun:
    """The same life cycle as :class:`ShotRun` for a server path job: the server reads the source
    files from storage it shares with Blender and writes the EXRs into the cache folder itself
    (its own decoder and writer, no pixels over the network). Built around a job already
    submitted (``job``, a ``pb.Job``); ``start()`` follows it on a worker thread; ``cancel()``
    cancels it on the server (finished EXRs stay whole: the server writes them atomically).

    Frames are counted, not listed: ``n_written``/``n_cached`` come from the server's job record."""

    def __init__(self, job, frames: list[int], *, client, folder: str, stem: str, number_offset: int,
                 on_progress: Callable[[int], None] | None = None):
        self.job = job
        self.frames = list(frames)
        self.client = client
        self.folder = folder
        self.stem = stem
        self.number_offset = number_offset  # file number = scene frame + number_offset
        self.on_progress = on_progress
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.error: str | None = None
        self.n_written = 0
        self.n_cached = 0
        self._done = 0
        self._worker: threading.Thread | None = None
        self.queue = queue.Queue(maxsize=1)  # the modal loop's "is there room" check: never full

    def path(self, frame: int) -> str:
        return os.path.join(self.folder, f"{self.stem}.{frame + self.number_offset:04d}.exr")

    @property
    def total(self) -> int:
        return len(self.frames)

    @property
    def done(self) -> int:
        return self._done

    @property
    def fed_all(self) -> bool:
        return True

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="hdrlift-job", daemon=True)
        self._worker.start()

    def feed(self, block: bool = True) -> bool:
        return False  # the server reads the frames itself

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def run(self) -> "ServerJobRun":
        if self._worker is None:
            self.start()
        self.finished.wait()
        return self

    def cancel(self) -> None:
        self.cancelled.set()
        try:
            self.client.cancel_job(self.job.id)
        except Exception:  # noqa: BLE001 - already finished, or the server is gone
            pass

    def _work(self) -> None:
        import grpc

        from hdrlift.plugin.v1 import hdrlift_pb2 as pb

        last = self.job
        try:
            for last in self.client.watch_job(self.job.id):
                self._done = int(last.written + last.skipped)
                if self.on_progress is not None:
                    self.on_progress(self._done)
            self.n_written, self.n_cached = int(last.written), int(last.skipped)
            if last.state == pb.JOB_STATE_FAILED:
                code = next((c.name for c in grpc.StatusCode if c.value[0] == last.error_code), "ERROR")
                self.error = f"server {self.client.servers}: {code}: {' '.join(last.error.split())}"
            elif last.state == pb.JOB_STATE_CANCELLED:
                self.cancelled.set()
        except BaseException as exc:  # noqa: BLE001 - one line, unless we cancelled
            if not self.cancelled.is_set():
                self.error = bridge.one_line(exc, getattr(self.client, "servers", ""))
        finally:
            self.finished.set()
