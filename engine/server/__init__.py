"""``hdrlift-serve``: the gRPC server render farms and host plug-ins call (contract: hdrlift.v1).

Every frame goes through the same :class:`hdrlift.engine.pipeline.Pipeline` as the CLI (one
pipeline per (model, output colour space), built on first use and cached): colour in with OCIO,
the model's back end, colour out. The server adds what a shared service needs:

* **Dynamic batching.** Handler threads decode and colour-convert frames, then hand them to one
  batcher thread that owns the device. It takes the oldest waiting frame and, while other frames
  are being prepared, waits up to ``--batch-window-ms`` for more frames of the same model and the
  same size (only equal shapes are stacked) up to ``--max-batch``; one back-end call runs them
  all. A frame alone (or one above the tiling budget) runs exactly as ``Pipeline.process`` does,
  so its result is bit-identical to an in-process call. ``--max-batch`` defaults to 1 on the CPU,
  where a stacked batch measured slower than its frames one by one (docs/server.md), and to 8 on
  a GPU.
* **Bounded memory.** At most ``--queue-size`` frames wait for the device; beyond that a request
  is answered ``RESOURCE_EXHAUSTED`` at once (clients back off and retry, or go elsewhere).
  Each stream has at most ``--stream-window`` frames in flight (gRPC flow control holds the
  sender), and a frame's declared size is checked before its payload is kept.
* **Deadlines and cancellation.** A frame whose RPC expired or was cancelled is dropped before it
  reaches the device; the handler answers ``DEADLINE_EXCEEDED``/``CANCELLED``. Jobs stop at the
  next frame when cancelled (finished frames stay: EXR writes are atomic).
* **Graceful shutdown** (SIGTERM/SIGINT): health goes NOT_SERVING, new RPCs are refused, every
  frame already accepted is finished and sent, open streams then end with ``UNAVAILABLE``
  (the client resends the rest elsewhere), running jobs are cancelled, and the process exits.
* Standard gRPC health (``grpc.health.v1``) and reflection; TLS, mutual TLS and bearer tokens
  (``--token-file`` or ``$HDRLIFT_TOKENS``, compared in constant time); path jobs confined to
  ``--root`` folders; one JSON log line per request on stderr; Prometheus metrics on
  ``--metrics-port`` (:mod:`hdrlift.engine.server.prometheus`).

See docs/server.md for flags, the error codes and a farm example.

The package, one module per concern:

* :mod:`.config` -- :class:`ServerConfig` (every limit and default) and the bearer tokens;
* :mod:`.cli` -- ``hdrlift-serve``'s flags, start, signals and drain;
* :mod:`.errors` -- the one mapping from exceptions to gRPC statuses;
* :mod:`.batcher` -- the device thread and dynamic batching;
* :mod:`.interceptors` -- authentication and request logging;
* :mod:`.jobs` -- path jobs: confinement to ``--root``, persistence in ``--state-dir``;
* :mod:`.service` -- the RPC handlers and :class:`HdrliftServer`'s life cycle;
* :mod:`.prometheus` -- the metrics and their HTTP endpoint.
"""

from hdrlift.engine.server.cli import build_parser, main  # noqa: F401
from hdrlift.engine.server.config import ServerConfig, load_tokens  # noqa: F401
from hdrlift.engine.server.errors import RpcFailure, failure_for  # noqa: F401
from hdrlift.engine.server.service import SERVICE_NAME, HdrliftServer  # noqa: F401

__all__ = ["HdrliftServer", "ServerConfig", "load_tokens", "main", "build_parser", "RpcFailure", "failure_for",
           "SERVICE_NAME"]
