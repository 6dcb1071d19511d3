"""``hdr-video --server``: decode and write EXRs here, reconstruct on hdrlift-serve servers.

:func:`convert_remote` is the file loop (:func:`hdrlift.engine.convert.convert`) with a
:class:`RemoteStep`: frames are decoded, named, resumed and written exactly as in a local run;
only the "infer these frames" step differs. It sends each frame's code values (in the input
colour space) to the servers, which do colour in, the model and colour out, and reply in the
output space.

Which server gets which frames is gRPC's business: the client's one channel balances calls with
``round_robin`` over every address of its target (a list, or a ``dns:///`` name gRPC resolves),
counting only servers whose health says SERVING. ``streams`` calls run at once, all drawing from
the one decoded sequence, and each carries at most ``frames_per_call`` frames before the next
call is placed, so the load spreads over the pool as calls come and go. A server that shuts
down or vanishes hands the frames it did not answer to the others (the client's resend, on a
new call that round-robin places elsewhere).
"""

from __future__ import annotations

import collections
import queue
import threading
from typing import Callable, Iterator

import numpy as np

from hdrlift.engine.colour import ColourManager, choose_input_space
from hdrlift.engine.convert import MAX_FRAME_PIXELS, ExrSettings, FrameStep, RunReport, Skip, check_range, convert
from hdrlift.engine.errors import HdrliftError, OutputError
from hdrlift.engine.io.exr import COMPRESSIONS
from hdrlift.plugin.client import DEFAULT_KEEPALIVE_S, URI_SCHEMES, Client, clean_text

_DONE = object()
POOL_STREAMS = 4  # calls at once when the target is a gRPC URI whose servers are not counted here
_HALF_MAX_ROUNDING_TO_INF = np.float32(65520.0)  # the smallest float that a float -> half rounds to inf


class RemoteStep(FrameStep):
    """The file loop's step for ``--server``: frames through the client's streams."""

    def __init__(self, client: Client, colour: ColourManager, *, model: str, output_space: str,
                 input_space: str | None = None, half: bool = True, mask: bool = False, wire_dtype: str = "float",
                 streams: int = 1, window: int = 4, timeout: float | None = None, frames_per_call: int = 8):
        self.client = client
        self.colour = colour
        self.model = model
        self.where = client.servers
        self._output_space = output_space
        self._user_input_space = input_space
        self._input_space = ""
        self.half = half
        self.mask = mask
        self.wire_dtype = wire_dtype
        self.streams = max(1, int(streams))
        self.window = window
        self.timeout = timeout
        self.frames_per_call = max(1, int(frames_per_call))
        self._chroma: dict[str, tuple | None] = {}

    @property
    def output_space(self) -> str:
        return self._output_space

    def input_space_for(self, tags, profile=None) -> str:
        if self._user_input_space:
            return self._user_input_space  # the server resolves it (and says how in each reply)
        return choose_input_space(self.colour, tags=tags, profile=profile)

    def open(self, input_space: str) -> None:
        self._input_space = input_space

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return rgb  # code values in the input space: colour in runs on the server

    def run(self, items: Iterator, timings: dict) -> Iterator:
        """One thread per stream, each pulling the next decoded frame from ``items`` (shared,
        under a lock) and yielding the replies here in the order its stream sent them."""
        lock = threading.Lock()
        stop = threading.Event()
        results: queue.Queue = queue.Queue(maxsize=2 * self.window * self.streams)
        errors: list[BaseException] = []

        def put(x) -> None:
            while True:
                try:
                    results.put(x, timeout=0.1)
                    return
                except queue.Full:
                    if stop.is_set():
                        return

        exhausted = threading.Event()

        def stream() -> None:
            sent: collections.deque = collections.deque()  # works this stream sent, oldest first

            def frames():
                """Up to ``frames_per_call`` frames for one call (fewer at the end)."""
                n = 0
                while n < self.frames_per_call and not stop.is_set():
                    with lock:
                        try:
                            item = next(items)
                        except StopIteration:
                            exhausted.set()
                            return
                    if isinstance(item, Skip):
                        put(item)
                        continue
                    sent.append(item)
                    n += 1
                    yield item.payload

            try:
                while not (stop.is_set() or exhausted.is_set()):  # one call per turn: round-robin places it
                    for res in self.client.reconstruct_frames(
                            frames(), model=self.model, input_space=self._input_space,
                            output_space=self._output_space, dtype=self.wire_dtype,
                            output_dtype="half" if self.half else "float", mask=self.mask, window=self.window,
                            timeout=self.timeout):
                        self._output_space = clean_text(res.header.output_space, 200)
                        put((sent.popleft(), res))
                        if stop.is_set():
                            break
            except BaseException as exc:  # noqa: BLE001 - raised by the caller
                errors.append(exc)
                stop.set()
            finally:
                put(_DONE)

        threads = [threading.Thread(target=stream, name=f"stream-{i}", daemon=True) for i in range(self.streams)]
        for th in threads:
            th.start()
        finished = 0
        try:
            while finished < len(threads):
                try:  # wake up now and then: a Ctrl-C the OS gave another thread runs its handler here
                    item = results.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _DONE:
                    finished += 1
                    continue
                yield item
        except BaseException:  # Ctrl-C, or the loop stopped early: stop sending, end the calls now
            stop.set()
            self.client.close()
            raise
        finally:
            stop.set()
            for th in threads:
                th.join(10)
        if errors:
            raise errors[0]

    def finish(self, res) -> tuple[np.ndarray, np.ndarray | None]:
        hdr = res.hdr
        if self.half and not np.isfinite(hdr).all():
            # a half reply holds +-inf where a value overflowed half (|x| >= 65520); a local run
            # writes the same inf (OpenImageIO rounds float -> half the same way), so give
            # write_exr the smallest float rounding to it
            big = _HALF_MAX_ROUNDING_TO_INF
            hdr = np.where(np.isposinf(hdr), big, np.where(np.isneginf(hdr), -big, hdr))
        return hdr, res.mask

    def attributes(self, res) -> dict:
        space = clean_text(res.header.output_space, 200)
        if space not in self._chroma:
            try:
                self._chroma[space] = tuple(float(c) for c in self.colour.chromaticities(space))
            except HdrliftError:
                self._chroma[space] = None
        return {"output_space": space, "input_space": clean_text(res.header.input_space, 200),
                "model": clean_text(res.header.model, 200), "model_version": clean_text(res.header.model_version, 200),
                "weights": clean_text(res.header.model_weights, 64) or None,
                "chromaticities": self._chroma[space], "server": self.client.servers}

    def expected_attributes(self, input_space: str) -> dict[str, str]:
        # what is known before the first reply: the model and the output space asked for
        try:
            space = self.colour.resolve(self._output_space)
        except HdrliftError:
            space = self._output_space
        return {"hdrlift:model": self.model, "hdrlift:colorspace": space}

    def account(self, timings: dict, elapsed: float) -> None:
        # the model's time is spent on the servers: what the run did not spend decoding or writing
        timings["model"] = max(0.0, elapsed - timings["decode"] - timings["encode"])


def convert_remote(source, output, servers: str, *, model: str | None = None, input_space: str | None = None,
                   output_space: str | None = None, start: int | None = None, end: int | None = None, every: int = 1,
                   resume: bool = False, overwrite: bool = False, half: bool = True, compression: str = "zip",
                   mask_layer: bool = False, single: bool = False, token: str | None = None, tls: bool = False,
                   ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                   server_name: str | None = None, streams: int | None = None, window: int = 4,
                   progress: Callable[[int, int | None, float], None] | None = None,
                   reader_options: dict | None = None, ocio_config: str | None = None, wire_dtype: str = "float",
                   timeout: float | None = None, retries: int = 4, connect_timeout: float | None = 30.0,
                   frames_per_call: int = 8,
                   keepalive: float = DEFAULT_KEEPALIVE_S, max_frame_pixels: int = MAX_FRAME_PIXELS,
                   warn: Callable[[str], None] | None = None) -> RunReport:
    """Convert ``source`` to EXRs here with the frames reconstructed on ``servers``.

    The server is asked first (``ListModels``, within ``connect_timeout``) whether it can run
    ``model`` (None: its default model; ``output_space`` None: its default space), so an
    unreachable server, a refused token or an unknown model fail before anything is read or
    written. Then the file loop runs with a :class:`RemoteStep`: the same names, attributes
    (plus ``hdrlift:server``) and resume rules as a local run. ``RunReport.model`` and
    ``.servers`` say what ran where. Errors: ``RemoteError`` (the server's status, exit code 6),
    ``InputError``/``OutputError`` as locally.
    """
    check_range(start, end, every)
    if compression not in COMPRESSIONS:
        raise OutputError(f"unknown EXR compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    if single and not str(output).lower().endswith(".exr"):
        raise OutputError(f"output must be an .exr file, got {str(output)!r}")
    # calls at once: one per server named; a gRPC target URI (dns:///pool...) may hide many
    n_addr = POOL_STREAMS if servers.strip().startswith(URI_SCHEMES) else len([a for a in servers.split(",") if a.strip()])
    client = Client(servers, token=token, tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                    server_name=server_name, retries=retries, keepalive=keepalive)
    cm = ColourManager(ocio_config)
    with client:
        name, default_space = client.runnable_model(model, connect_timeout)
        step = RemoteStep(client, cm, model=name, output_space=output_space or default_space,
                          input_space=input_space, half=half, mask=mask_layer, wire_dtype=wire_dtype,
                          streams=streams or n_addr, window=window, timeout=timeout,
                          frames_per_call=frames_per_call)
        report = convert(step, source, output,
                         exr_settings=ExrSettings(half=half, compression=compression, mask_layer=mask_layer),
                         ocio_config_name=cm.config_name, start=start, end=end, every=every, resume=resume,
                         overwrite=overwrite, progress=progress, reader_options=reader_options, single=single,
                         queue_size=2 * window, encode_workers=2, max_frame_pixels=max_frame_pixels, warn=warn)
    report.written.sort()
    report.skipped.sort()
    return report
