"""Helpers shared by the server tests (imported by conftest.py and the test files)."""

from __future__ import annotations

import json
import threading

import numpy as np

from hdrlift.engine.pipeline import Pipeline
from hdrlift.engine.server import HdrliftServer

BASE = dict(host="127.0.0.1", port=0, model="landis", backend="torch", preload=("landis", "inverse-crf"),
            grace=10.0, max_batch=8)


class LogSink:
    """Collects the server's JSON log lines (a file-like object)."""

    def __init__(self):
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self.lines.extend(ln for ln in text.splitlines() if ln.strip())

    def flush(self) -> None:
        pass

    def records(self) -> list[dict]:
        with self._lock:
            return [json.loads(ln) for ln in self.lines]


def start_server(**overrides) -> HdrliftServer:
    cfg = dict(BASE)
    cfg["log_stream"] = LogSink()
    cfg.update(overrides)
    s = HdrliftServer(**cfg)
    s.start()
    return s


_REFS: dict[str, Pipeline] = {}


def reference(model: str) -> Pipeline:
    """The in-process pipeline a server's results must equal (same model, back end, spaces)."""
    if model not in _REFS:
        _REFS[model] = Pipeline(model=model, backend="torch")
    return _REFS[model]


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A code-value frame with clipped highlights (so expansion operators do something)."""
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, 3), dtype=np.float32) * np.float32(1.2)
    return np.minimum(a, np.float32(1.0))


def occupy(address: str, n: int, model: str = "landis", h: int = 1080, w: int = 1920):
    """Keep a server's device busy: a thread streaming ``n`` large frames. Returns the thread."""
    from hdrlift.plugin import Client

    big = frame(h, w, seed=99)

    def run():
        try:
            with Client(address, retries=0) as c:
                for _ in c.reconstruct_frames([big] * n, model=model, window=n):
                    pass
        except Exception:  # noqa: BLE001 - the server may be shut down under it
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(cond, timeout: float = 60.0, step: float = 0.02) -> bool:
    """Poll ``cond`` until it holds (True) or ``timeout`` seconds pass (False). The default is
    generous: a loaded 2-core CI machine can stall a thread for seconds."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class DeviceHold:
    """Holds a server's device: the batcher thread blocks before its next device call until
    :meth:`release`. Makes "the device is busy" deterministic, whatever the machine's speed:
    ``entered`` is set once a batch is waiting at the gate (frames behind it stay queued).
    ``allow``: device calls that still run before the gate closes."""

    def __init__(self, server: HdrliftServer, allow: int = 0):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches = 0
        self._batcher = server.batcher
        original = type(self._batcher)._run.__get__(self._batcher)

        def held_run(batch):
            self.batches += 1
            if self.batches > allow:
                self.entered.set()
                self.gate.wait()
            original(batch)

        self._batcher._run = held_run
        holds = getattr(server, "_test_holds", [])
        holds.append(self)
        server._test_holds = holds

    def release(self) -> None:
        self._batcher.__dict__.pop("_run", None)  # later batches run directly
        self.gate.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def release_holds(server: HdrliftServer) -> None:
    for h in getattr(server, "_test_holds", []):
        h.release()
