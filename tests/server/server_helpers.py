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


def wait_for(cond, timeout: float = 20.0, step: float = 0.01) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False
