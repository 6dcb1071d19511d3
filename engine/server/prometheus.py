"""A tiny Prometheus text-format exporter (no client library): counters, gauges, a histogram.

:class:`Metrics` holds the hdrlift server's numbers; :func:`serve_metrics` publishes them at
``http://HOST:PORT/metrics`` (text exposition format 0.0.4) from a daemon thread using the
standard library's ``http.server``.

Exported series
    ``hdrlift_requests_total{method,code}``        counter, one per finished RPC
    ``hdrlift_frames_total{model}``                 counter, frames reconstructed
    ``hdrlift_frames_per_second``                   gauge, frames finished over the last 10 s / 10
    ``hdrlift_queue_depth``                         gauge, frames waiting for the device
    ``hdrlift_inflight_requests``                   gauge
    ``hdrlift_batches_total`` / ``hdrlift_batch_frames_total``  counters (mean batch = ratio)
    ``hdrlift_request_latency_seconds{method}``     histogram
"""

from __future__ import annotations

import collections
import http.server
import threading
import time
from typing import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FPS_WINDOW = 10.0


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(d: dict) -> str:
    if not d:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in d.items()) + "}"


class Metrics:
    """Thread-safe counters for the server; :meth:`render` gives the Prometheus text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = collections.Counter()
        self.frames: dict[str, int] = collections.Counter()
        self.batches = 0
        self.batch_frames = 0
        self._recent: collections.deque[float] = collections.deque()
        self._hist: dict[str, list[int]] = {}
        self._hist_sum: dict[str, float] = collections.Counter()
        self._hist_count: dict[str, int] = collections.Counter()
        self.inflight = 0
        self.gauges: dict[str, Callable[[], float]] = {}

    def request_started(self) -> None:
        with self._lock:
            self.inflight += 1

    def request_finished(self, method: str, code: str, seconds: float) -> None:
        with self._lock:
            self.inflight -= 1
            self.requests[(method, code)] += 1
            buckets = self._hist.setdefault(method, [0] * (len(LATENCY_BUCKETS) + 1))
            for i, b in enumerate(LATENCY_BUCKETS):
                if seconds <= b:
                    buckets[i] += 1
                    break
            else:
                buckets[-1] += 1
            self._hist_sum[method] += seconds
            self._hist_count[method] += 1

    def frames_done(self, model: str, n: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames[model] += n
            for _ in range(n):
                self._recent.append(now)
            self._trim(now)

    def batch_done(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batch_frames += size

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0] < now - FPS_WINDOW:
            self._recent.popleft()

    def frames_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return len(self._recent) / FPS_WINDOW

    def total_frames(self) -> int:
        with self._lock:
            return sum(self.frames.values())

    def count(self, method: str, code: str) -> int:
        with self._lock:
            return self.requests.get((method, code), 0)

    def render(self) -> str:
        fps = self.frames_per_second()
        gauges = {name: fn() for name, fn in self.gauges.items()}
        out: list[str] = []
        with self._lock:
            out += ["# HELP hdrlift_requests_total Finished RPCs by method and status code.",
                    "# TYPE hdrlift_requests_total counter"]
            for (m, c), n in sorted(self.requests.items()):
                out.append(f"hdrlift_requests_total{_labels({'method': m, 'code': c})} {n}")
            out += ["# HELP hdrlift_frames_total Frames reconstructed.", "# TYPE hdrlift_frames_total counter"]
            for m, n in sorted(self.frames.items()):
                out.append(f"hdrlift_frames_total{_labels({'model': m})} {n}")
            out += ["# HELP hdrlift_frames_per_second Frames finished per second over the last 10 s.",
                    "# TYPE hdrlift_frames_per_second gauge", f"hdrlift_frames_per_second {fps:.6g}"]
            out += ["# HELP hdrlift_inflight_requests RPCs being served.", "# TYPE hdrlift_inflight_requests gauge",
                    f"hdrlift_inflight_requests {self.inflight}"]
            out += ["# HELP hdrlift_batches_total Device calls made by the batcher.",
                    "# TYPE hdrlift_batches_total counter", f"hdrlift_batches_total {self.batches}",
                    "# HELP hdrlift_batch_frames_total Frames in those device calls.",
                    "# TYPE hdrlift_batch_frames_total counter", f"hdrlift_batch_frames_total {self.batch_frames}"]
            for name, v in sorted(gauges.items()):
                out += [f"# TYPE {name} gauge", f"{name} {v:.6g}"]
            out += ["# HELP hdrlift_request_latency_seconds RPC latency.",
                    "# TYPE hdrlift_request_latency_seconds histogram"]
            for m, buckets in sorted(self._hist.items()):
                acc = 0
                for b, n in zip(LATENCY_BUCKETS, buckets):
                    acc += n
                    out.append(f"hdrlift_request_latency_seconds_bucket{_labels({'method': m, 'le': f'{b:g}'})} {acc}")
                acc += buckets[-1]
                out.append(f"hdrlift_request_latency_seconds_bucket{_labels({'method': m, 'le': '+Inf'})} {acc}")
                out.append(f"hdrlift_request_latency_seconds_sum{_labels({'method': m})} {self._hist_sum[m]:.6f}")
                out.append(f"hdrlift_request_latency_seconds_count{_labels({'method': m})} {self._hist_count[m]}")
        return "\n".join(out) + "\n"


def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """Serve ``metrics`` at ``/metrics`` on ``host:port`` (0: any free port; see ``.server_port``)
    from a daemon thread; call ``.shutdown()`` to stop."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not worth a log line
            pass

    srv = http.server.ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="metrics-http", daemon=True).start()
    return srv
