"""Server throughput and latency: 1, 4, 8 concurrent clients vs in-process ``Pipeline.process``.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/bench_server.py \
        --models inverse-crf,hdrcnn-lite --size 512x288 --clients 1,4,8

For each model: the in-process rate (one thread calling ``Pipeline.process``), then a real
``hdrlift-serve`` process on loopback (``python -m hdrlift.engine.server``) driven by N client
threads, each sending frames one after another with ``Client.reconstruct`` (unary: a 512x288
float frame fits one message). Latency is per frame as a client sees it (encode, transfer,
queue, batch, decode). Prints a markdown table; "batch" is the server's mean frames per device
call (from its Prometheus metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

from hdrlift.engine.pipeline import Pipeline
from hdrlift.plugin import Client


def pct(values, q):
    return float(np.percentile(np.asarray(values), q)) * 1000.0 if values else float("nan")


def frames_for(h, w, n):
    rng = np.random.default_rng(0)
    return [np.minimum(rng.random((h, w, 3), dtype=np.float32) * 1.2, 1.0).astype(np.float32) for _ in range(n)]


def bench_inprocess(model, backend, frames):
    p = Pipeline(model=model, backend=backend)
    p.process(frames[0])  # warm-up
    lat = []
    t0 = time.perf_counter()
    for x in frames:
        t = time.perf_counter()
        p.process(x)
        lat.append(time.perf_counter() - t)
    return len(frames) / (time.perf_counter() - t0), lat


def start_server(model, backend, max_batch):
    cmd = [sys.executable, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0", "--model", model,
           "--backend", backend, "--metrics-port", "0", "--queue-size", "64"]
    if max_batch:
        cmd += ["--max-batch", str(max_batch)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    start = json.loads(proc.stderr.readline())
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # drain request logs
    return proc, start["port"], start["metrics_port"]


def scrape(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    get = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # noqa: E731
    return get("hdrlift_batches_total"), get("hdrlift_batch_frames_total")


def bench_server(port, metrics_port, model, frames, clients, per_client):
    addr = f"127.0.0.1:{port}"
    with Client(addr, chunk_bytes=8 << 20) as c:
        c.wait_ready()
        c.reconstruct(frames[0], model=model)  # warm-up
    b0, f0 = scrape(metrics_port)
    lat: list[float] = []
    lock = threading.Lock()

    def work(i):
        mine = []
        with Client(addr, chunk_bytes=8 << 20) as c:
            for k in range(per_client):
                x = frames[(i + k) % len(frames)]
                t = time.perf_counter()
                c.reconstruct(x, model=model)
                mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fps = clients * per_client / (time.perf_counter() - t0)
    b1, f1 = scrape(metrics_port)
    return fps, lat, (f1 - f0) / max(1.0, b1 - b0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="inverse-crf,hdrcnn-lite")
    ap.add_argument("--size", default="512x288", help="WxH")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--frames", type=int, default=0, help="frames per client (0: per model default)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--max-batch", type=int, default=None, help="server --max-batch (default: the server's)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = frames_for(h, w, 8)
    rows = []
    for model in args.models.split(","):
        n = args.frames or (40 if model in ("inverse-crf", "landis") else 6)
        fps, lat = bench_inprocess(model, args.backend, (frames * (n // len(frames) + 1))[:n])
        rows.append((model, "in-process Pipeline.process", 1, fps, pct(lat, 50), pct(lat, 99), "-"))
        proc, port, mport = start_server(model, args.backend, args.max_batch)
        try:
            for k in (int(v) for v in args.clients.split(",")):
                fps, lat, batch = bench_server(port, mport, model, frames, k, n)
                rows.append((model, "server, unary", k, fps, pct(lat, 50), pct(lat, 99), f"{batch:.2f}"))
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"\n{w}x{h} frames, back end {args.backend}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"{os.cpu_count()} CPUs\n")
    print("| model | path | clients | frames/s | p50 ms | p99 ms | mean batch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for m, path, k, fps, p50, p99, batch in rows:
        print(f"| {m} | {path} | {k} | {fps:.1f} | {p50:.1f} | {p99:.1f} | {batch} |")


if __name__ == "__main__":
    main()
