"""The server's configuration: :class:`ServerConfig` (every limit and default, checked by
``validate``) and the bearer tokens it accepts."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from hdrlift.engine.colour import DEFAULT_OUTPUT_SPACE
from hdrlift.engine.errors import InputError
from hdrlift.engine.models import DEFAULT_MODEL

DEFAULT_PORT = 50051
DEFAULT_MAX_MESSAGE = 64 << 20
DEFAULT_MAX_PIXELS = 8192 * 8192


@dataclasses.dataclass
class ServerConfig:
    host: str = "[::]"
    port: int = DEFAULT_PORT  # 0: any free port
    model: str = DEFAULT_MODEL
    output_space: str = DEFAULT_OUTPUT_SPACE
    device: str = "cpu"
    backend: str = "auto"
    precision: str = "fp32"
    ocio_config: str | None = None
    cache_dir: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int | None = None  # None: 1 on the CPU (batching does not pay there), 8 on a GPU
    batch_window_ms: float = 3.0
    queue_size: int = 32
    stream_window: int = 4
    workers: int = 32  # most hdrlift.v1 calls served at once (each holds a handler thread)
    # most health Watch / reflection streams open at once (each client channel keeps one Watch per
    # server for its load balancing), with threads of their own, apart from the work calls
    aux_streams: int = 256
    aux_per_peer: int = 64  # most of those from one peer address
    job_workers: int = 1
    roots: tuple[str, ...] = ()
    state_dir: str | None = None  # job records survive restarts here; unfinished jobs resume
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # with cert/key: clients must present a certificate signed by it
    tokens: tuple[str, ...] = ()
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # /metrics has no authentication: loopback unless asked
    grace: float = 30.0
    preload: tuple[str, ...] = ()
    log_stream: Any = None  # None: sys.stderr; False: no request logs (life-cycle lines still on stderr)

    def validate(self) -> None:
        if self.max_message_bytes < 64 << 10:
            raise InputError(f"--max-message-bytes must be at least 65536, got {self.max_message_bytes}")
        if (self.max_batch is not None and self.max_batch < 1) or self.queue_size < 1 or self.stream_window < 1 \
                or self.workers < 2 or self.aux_streams < 1 or self.aux_per_peer < 1:
            raise InputError("--max-batch, --queue-size, --stream-window, --aux-streams and --aux-per-peer must be "
                             ">= 1, --workers >= 2")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("--tls-cert and --tls-key go together")
        if self.tls_ca and not self.tls_cert:
            raise InputError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
        for r in self.roots:
            if not os.path.isdir(r):
                raise InputError(f"--root {r}: not a folder")
        if self.state_dir is not None:
            try:
                os.makedirs(os.path.join(self.state_dir, "jobs"), exist_ok=True)
            except OSError as exc:
                raise InputError(f"--state-dir {self.state_dir}: {exc.strerror or exc}") from None
            if not os.access(os.path.join(self.state_dir, "jobs"), os.W_OK):
                raise InputError(f"--state-dir {self.state_dir}: not writable")


def load_tokens(token_file: str | None = None, env: str | None = None) -> tuple[str, ...]:
    """Bearer tokens from a file (one per line, ``#`` comments) and/or ``$HDRLIFT_TOKENS``
    (comma-separated)."""
    tokens: list[str] = []
    if token_file:
        try:
            text = pathlib.Path(token_file).read_text()
        except OSError as exc:
            raise InputError(f"cannot read --token-file {token_file}: {exc.strerror or exc}") from None
        tokens += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    env = os.environ.get("HDRLIFT_TOKENS", "") if env is None else env
    tokens += [t.strip() for t in env.split(",") if t.strip()]
    return tuple(dict.fromkeys(tokens))


