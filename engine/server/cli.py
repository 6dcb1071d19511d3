"""``hdrlift-serve``: the command line (flags -> :class:`ServerConfig`), start, signals, drain."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError
from hdrlift.engine.models import DEFAULT_MODEL
from hdrlift.engine.colour import DEFAULT_OUTPUT_SPACE
from hdrlift.engine.server.config import DEFAULT_MAX_MESSAGE, DEFAULT_MAX_PIXELS, DEFAULT_PORT, ServerConfig, load_tokens
from hdrlift.engine.server.errors import RpcFailure
from hdrlift.engine.server.service import HdrliftServer


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hdrlift-serve", description="hdrlift gRPC server (hdrlift.v1): frames "
                                 "and path jobs for render farms and host plug-ins. See docs/server.md.")
    ap.add_argument("--host", default="[::]", help="address to listen on (default [::], all interfaces)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"default model (default {DEFAULT_MODEL})")
    ap.add_argument("--preload", action="append", default=[], metavar="MODEL",
                    help="load this model at start (repeatable; default: the default model)")
    ap.add_argument("--output-space", default=DEFAULT_OUTPUT_SPACE, help="default output colour space")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--backend", default="auto", help="auto, torch, onnxruntime, tensorrt")
    ap.add_argument("--precision", default="fp32", help="fp32, fp16, bf16")
    ap.add_argument("--ocio-config", default=None, help="OCIO config (default $OCIO, else the built-in studio config)")
    ap.add_argument("--cache-dir", default=None, help="back end cache (exports, TensorRT plans)")
    ap.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE,
                    help="largest gRPC message either way (default 64 MiB); streams chunk frames below it")
    ap.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest frame accepted (w x h)")
    ap.add_argument("--max-batch", type=int, default=None, help="most frames per device call (default: 1 on the "
                    "CPU, where a batch is no faster than its frames one by one; 8 on a GPU)")
    ap.add_argument("--batch-window-ms", type=float, default=3.0, help="how long to wait for frames to batch")
    ap.add_argument("--queue-size", type=int, default=32, help="frames waiting for the device before "
                    "RESOURCE_EXHAUSTED (default 32)")
    ap.add_argument("--stream-window", type=int, default=4, help="frames in flight per stream (default 4)")
    ap.add_argument("--workers", type=int, default=32, help="hdrlift.v1 calls served at once; more are answered "
                    "RESOURCE_EXHAUSTED (default 32)")
    ap.add_argument("--aux-streams", type=int, default=256, help="health Watch and reflection streams open at once "
                    "(default 256: every client channel watches its servers' health), kept apart from the calls "
                    "that serve work")
    ap.add_argument("--aux-per-peer", type=int, default=64, help="of those, from one peer address (default 64)")
    ap.add_argument("--job-workers", type=int, default=1, help="path jobs run at once (default 1)")
    ap.add_argument("--root", action="append", default=[], help="folder path jobs may read and write (repeatable); "
                    "without one, jobs are refused")
    ap.add_argument("--state-dir", help="keep job records here (JSON, one file per job): they survive restarts, and "
                    "jobs queued or running when the server stopped resume (finished frames kept)")
    ap.add_argument("--tls-cert", help="server certificate chain (PEM)")
    ap.add_argument("--tls-key", help="server private key (PEM)")
    ap.add_argument("--tls-ca", help="CA (PEM) client certificates must chain to: mutual TLS")
    ap.add_argument("--token-file", help="bearer tokens, one per line (also $HDRLIFT_TOKENS, comma-separated)")
    ap.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics at :PORT/metrics")
    ap.add_argument("--metrics-host", default="127.0.0.1", help="address /metrics listens on (default 127.0.0.1: "
                    "it has no authentication; give 0.0.0.0 only behind a firewall)")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM (default 30)")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines (the started, draining and "
                    "stopped lines stay)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    started: list[HdrliftServer] = []

    def start() -> int:
        try:
            cfg = ServerConfig(
                host=args.host, port=args.port, model=args.model, output_space=args.output_space,
                device=args.device, backend=args.backend, precision=args.precision, ocio_config=args.ocio_config,
                cache_dir=args.cache_dir, max_message_bytes=args.max_message_bytes, max_pixels=args.max_pixels,
                max_batch=args.max_batch, batch_window_ms=args.batch_window_ms, queue_size=args.queue_size,
                stream_window=args.stream_window, workers=args.workers, aux_streams=args.aux_streams,
                aux_per_peer=args.aux_per_peer, job_workers=args.job_workers,
                roots=tuple(args.root), state_dir=args.state_dir, tls_cert=args.tls_cert, tls_key=args.tls_key,
                tls_ca=args.tls_ca, tokens=load_tokens(args.token_file), metrics_port=args.metrics_port,
                metrics_host=args.metrics_host, grace=args.grace, preload=tuple(args.preload),
                log_stream=False if args.quiet else None)
            server = HdrliftServer(cfg)
            server.start()
        except RpcFailure as exc:  # a configuration the server refuses (an unknown default model...)
            raise InputError(exc.message) from None
        started.append(server)
        return 0

    rc = run_cli("hdrlift-serve", start, sigterm=False)
    if rc:
        return rc
    server = started[0]
    stopping = threading.Event()

    def on_signal(signum, _frame):
        if stopping.is_set():
            return
        stopping.set()
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not server.wait(0.5):
        pass
    return 0


def entry() -> None:
    """The ``hdrlift-serve`` command: :func:`main`, then the process ends at once. Threads a stuck
    read left behind (a job on a hung network share) never keep the process alive past the
    drain (``--grace``): SIGTERM ends it within ``--grace`` plus a few seconds."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
