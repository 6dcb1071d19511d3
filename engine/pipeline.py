"""The one pipeline every entry point drives (CLI, gRPC server, host shims).

    decode (PyAV / OpenImageIO) -> colour in (OCIO: input space -> network input domain)
      -> model (registry) -> colour out (OCIO: linear Rec.709 -> output space)
      -> encode (OpenEXR, atomic) | reply (server) | host image

Three stages, connected by bounded queues so that the slowest one sets the rate and memory stays
flat for any clip length:

* the decode thread decodes a frame and converts it into the network's input domain (colour in);
* the calling thread runs inference, ``batch`` frames of one size per back-end call when the
  tiling budget (``max_pixels``) holds them, else one frame (tiled when large);
* ``encode_workers`` threads convert the network output to the output space (colour out) and
  write the EXR (atomic).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import queue
import re
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from hdrlift.engine import __version__
from hdrlift.engine.colour import (
    DEFAULT_CONFIG,
    DEFAULT_OUTPUT_SPACE,
    NETWORK_INPUT_SPACE,
    NETWORK_OUTPUT_SPACE,
    ColourManager,
    colorspace_from_tags,
)
from hdrlift.engine.errors import HdrliftError, InputError, ModelError, OutputError
from hdrlift.engine.io import exr
from hdrlift.engine.io.images import open_source
from hdrlift.engine.backends import create_backend
from hdrlift.engine.models import DEFAULT_MODEL, get_info, load_model
from hdrlift.engine.tiling import default_max_pixels, run_tiled

EXR_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
_SENTINEL = object()


@dataclasses.dataclass
class PipelineOptions:
    model: str = DEFAULT_MODEL
    weights: str | None = None  # user weights (.safetensors) for a network
    device: str = "cpu"
    ocio_config: str | None = None  # None: $OCIO, else the OCIO built-in studio config
    input_space: str | None = None  # None: from the stream's colour tags
    output_space: str = DEFAULT_OUTPUT_SPACE
    half: bool = True
    compression: str = "zip"
    mask_layer: bool = False  # extra EXR layer "mask.Y": which pixels were expanded
    queue_size: int = 4  # frames in flight between stages (bounds memory)
    backend: str = "auto"  # auto, torch, onnxruntime, tensorrt (engine/backends)
    precision: str = "fp32"  # fp32, fp16, bf16
    max_pixels: int | None = None  # pixels per back-end call; above it frames run in tiles (None: tiling.default_max_pixels)
    cache_dir: str | None = None  # ONNX exports, TensorRT plans, auto-selection records
    encode_workers: int = 2
    batch: int | None = None  # frames per back-end call (None: 4 on CUDA, 1 on the CPU), within max_pixels

    def validate(self) -> None:
        if self.compression not in EXR_COMPRESSIONS:
            raise OutputError(f"unknown EXR compression {self.compression!r}; choose one of {', '.join(EXR_COMPRESSIONS)}")
        if self.queue_size < 1 or self.encode_workers < 1:
            raise ValueError("queue_size and encode_workers must be >= 1")
        if self.batch is not None and self.batch < 1:
            raise InputError(f"batch must be >= 1, got {self.batch}")
        if self.max_pixels is not None and self.max_pixels < 64 * 64:
            raise InputError(f"max_pixels must be at least 4096 (64 x 64), got {self.max_pixels}")


@dataclasses.dataclass
class FrameResult:
    hdr: np.ndarray  # H x W x 3 float32, scene-linear in the output space
    mask: np.ndarray  # H x W float32 in [0, 1]: how much each pixel was expanded
    linear709: np.ndarray  # H x W x 3 float32 in the network output domain (for previews)


@dataclasses.dataclass
class RunReport:
    written: list[pathlib.Path]
    skipped: list[pathlib.Path]
    frames: int
    seconds: float
    input_space: str
    output_space: str
    timings: dict[str, float]  # busy seconds per stage: decode, colour (in + out), model, encode

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def output_path(pattern: str | os.PathLike, number: int) -> pathlib.Path:
    """Expand ``name.####.exr`` or ``name.%04d.exr`` with a frame number."""
    s = str(pattern)
    m = re.search(r"%0?(\d*)d", s)
    if m:
        width = int(m.group(1) or 1)
        return pathlib.Path(s[: m.start()] + f"{number:0{width}d}" + s[m.end():])
    m = re.search(r"#+", s)
    if m:
        width = len(m.group(0))
        return pathlib.Path(s[: m.start()] + f"{number:0{width}d}" + s[m.end():])
    raise OutputError(f"output pattern {s!r} has no frame number field (#### or %04d)")


def sequence_pattern(source: str | os.PathLike, out: str | os.PathLike) -> str:
    """Turn an output folder into ``folder/<source stem>.####.exr``; keep explicit patterns."""
    out_s = str(out)
    if "#" in out_s or re.search(r"%0?\d*d", out_s):
        return out_s
    stem = pathlib.Path(str(source)).name
    stem = re.sub(r"(\.?[#]+|\.?%0?\d*d)?\.[^.]+$", "", stem) or "frame"
    return str(pathlib.Path(out_s) / f"{stem}.####.exr")


class Pipeline:
    """Frame-by-frame HDR reconstruction with colour management. Thread-safe for ``process``."""

    def __init__(self, options: PipelineOptions | None = None, **overrides):
        opts = dataclasses.replace(options or PipelineOptions(), **overrides)
        opts.validate()
        self.options = opts
        self.colour = ColourManager(opts.ocio_config)
        self.output_space = self.colour.resolve(opts.output_space)
        self._to_output = self.colour.network_converter(self.output_space, to_network=False)
        info = get_info(opts.model)
        if info.kind == "fusion":
            raise ModelError(f"model {opts.model!r} merges exposure brackets; use hdr-merge --method {opts.model}")
        self.model = load_model(opts.model, device=opts.device, weights=opts.weights)
        self.model_name = opts.model
        self.model_version = self.model.info.version
        self.backend = create_backend(self.model, kind=opts.backend, device=opts.device,
                                      precision=opts.precision, cache_dir=opts.cache_dir)
        self.max_pixels = opts.max_pixels or default_max_pixels(self.model.info, opts.device, self.backend.precision)
        self.batch = opts.batch or (4 if str(opts.device).startswith("cuda") else 1)
        self._lock = threading.Lock()
        try:
            self.chromaticities = self.colour.chromaticities(self.output_space)
        except HdrliftError:
            self.chromaticities = None

    # -- in-memory -------------------------------------------------------------------------
    def input_space_for(self, tags=None) -> str:
        if self.options.input_space:
            return self.colour.resolve(self.options.input_space)
        if tags is None:
            return self.colour.resolve("srgb")
        return colorspace_from_tags(tags, self.colour)

    def process(self, rgb: np.ndarray, input_space: str | None = None) -> FrameResult:
        """Reconstruct one frame: ``rgb`` H x W x 3 code values in ``input_space``."""
        rgb = self._check_frame(rgb)
        space = self.colour.resolve(input_space) if input_space else self.input_space_for(None)
        net_in = self.colour.network_converter(space, to_network=True)(rgb)
        np.clip(net_in, 0.0, 1.0, out=net_in)
        lin, mask = self._infer(net_in)
        return FrameResult(hdr=self._to_output(lin), mask=mask, linear709=lin)

    @staticmethod
    def _check_frame(rgb: np.ndarray) -> np.ndarray:
        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3:
            raise InputError(f"frame must be H x W x 3, got shape {tuple(a.shape)}")
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise InputError(f"frame is empty: shape {tuple(a.shape)}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise InputError(f"frame has {bad} NaN/Inf values")
        return a

    def infer_frames(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Network-domain frames of one size -> [(linear H x W x 3, mask H x W)]. One frame goes
        through the tiler (whole when within ``max_pixels``); several go through the back end in
        one call, which the caller keeps within ``max_pixels`` (this pipeline's batching and the
        server's batcher both do). No check of the values: callers do that."""
        if len(frames) == 1:
            return [run_tiled(self.backend, frames[0], max_pixels=self.max_pixels)]
        hdr, mask = self.backend.run(np.stack([f.transpose(2, 0, 1) for f in frames]))
        return [(np.ascontiguousarray(hdr[i].transpose(1, 2, 0)), np.ascontiguousarray(mask[i, 0]))
                for i in range(len(frames))]

    def _infer_group(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = self.infer_frames(frames)
        for lin, _ in out:
            if not np.isfinite(lin).all():
                raise ModelError(f"model {self.model_name!r} produced non-finite values")
        return out

    def _infer(self, net_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._infer_group([net_in])[0]

    # -- files -----------------------------------------------------------------------------
    def exr_attributes(self, source: str, number: int, input_space: str) -> dict:
        attrs = {
            "oiio:ColorSpace": self.output_space,
            "hdrlift:colorspace": self.output_space,
            "hdrlift:input_colorspace": input_space,
            "hdrlift:source": str(source),
            "hdrlift:source_frame": int(number),
            "hdrlift:model": self.model_name,
            "hdrlift:model_version": self.model_version,
            "hdrlift:version": __version__,
            "hdrlift:ocio_config": self.colour.config_name,
        }
        if self.chromaticities is not None:
            attrs["chromaticities"] = tuple(float(c) for c in self.chromaticities)
        return attrs

    def write_frame(self, path: pathlib.Path, result: FrameResult, attrs: dict) -> None:
        layers = {"mask": result.mask} if self.options.mask_layer else None
        exr.write_exr(path, result.hdr, half=self.options.half, compression=self.options.compression,
                      attributes=attrs, layers=layers)

    def convert(
        self,
        source: str | os.PathLike,
        output: str | os.PathLike,
        *,
        start: int | None = None,
        end: int | None = None,
        every: int = 1,
        resume: bool = False,
        overwrite: bool = False,
        progress: Callable[[int, int | None, float], None] | None = None,
        preview: str | os.PathLike | None = None,
        reader_options: dict | None = None,
        single: bool = False,
    ) -> RunReport:
        """Convert a video, image sequence or still to EXR files.

        ``output`` is a folder (frames become ``folder/<stem>.####.exr``), a pattern with
        ``####``/``%04d``, or, with ``single=True``, one EXR path for a still.
        """
        if every < 1:
            raise InputError(f"--every must be >= 1, got {every}")
        if start is not None and end is not None and end < start:
            raise InputError(f"frame range {start}-{end} is empty")
        reader = open_source(source, **(reader_options or {}))
        t0 = time.perf_counter()
        timings = {"decode": 0.0, "colour": 0.0, "model": 0.0, "encode": 0.0}
        written: list[pathlib.Path] = []
        skipped: list[pathlib.Path] = []
        with reader:
            input_space = self.input_space_for(getattr(reader, "tags", None))
            to_net = self.colour.network_converter(input_space, to_network=True)
            if single:
                target = pathlib.Path(output)
                if target.suffix.lower() != ".exr":
                    raise OutputError(f"output must be an .exr file, got {str(target)!r}")
                def path_for(n: int) -> pathlib.Path:
                    return target
            else:
                pattern = sequence_pattern(source, output)
                def path_for(n: int) -> pathlib.Path:
                    return output_path(pattern, n)
            out_dir = path_for(0).parent
            self._prepare_dir(out_dir)
            remove_stale_temporaries(out_dir)

            total = self._count(reader, start, end, every)
            mid = None if total is None else total // 2
            seen = [0]
            colour_in = [0.0]  # touched by the decode thread only; added to timings at the end

            def prepare(frame) -> _Work | _Skip:
                """Decode thread: skip a finished frame, or bring the frame into the network domain."""
                target = path_for(frame.number)
                seen[0] += 1
                # the preview shows the first frame and the middle one
                want_preview = preview is not None and (seen[0] == 1 or seen[0] - 1 == mid)
                if target.exists():
                    if resume and exr.is_complete_exr(target) and not want_preview:
                        return _Skip(target)
                    if not (resume or overwrite):
                        raise OutputError(f"{target} exists; pass --resume to skip finished frames or --overwrite")
                t = time.perf_counter()
                net_in = to_net(self._check_frame_in(frame, source))
                np.clip(net_in, 0.0, 1.0, out=net_in)
                colour_in[0] += time.perf_counter() - t
                return _Work(frame.number, target, net_in, want_preview)

            items = self._decode_thread(reader.frames(start=start, end=end, every=every), timings, prepare)
            preview_pick = None
            pending: list[tuple[pathlib.Path, Future]] = []
            done = 0
            with ThreadPoolExecutor(max_workers=self.options.encode_workers, thread_name_prefix="exr") as pool:
                try:
                    for group in self._groups(items):
                        if isinstance(group, _Skip):
                            skipped.append(group.target)
                            done += 1
                            if progress:
                                progress(done, total, time.perf_counter() - t0)
                            continue
                        tm = time.perf_counter()
                        outputs = self._infer_group([w.net_in for w in group])
                        timings["model"] += time.perf_counter() - tm
                        for w, (lin, mask) in zip(group, outputs):
                            if w.preview:
                                preview_pick = (w.net_in, lin)
                            if resume and w.target.exists() and exr.is_complete_exr(w.target):
                                skipped.append(w.target)
                                done += 1
                                continue
                            attrs = self.exr_attributes(source, w.number, input_space)
                            # bounded: wait for the oldest write before queueing more
                            while len(pending) >= self.options.queue_size:
                                self._finish(pending.pop(0), written, timings)
                            pending.append((w.target, pool.submit(self._colour_and_write, w.target, lin, mask, attrs)))
                            done += 1
                            if progress:
                                progress(done, total, time.perf_counter() - t0)
                    while pending:
                        self._finish(pending.pop(0), written, timings)
                except BaseException:
                    items.close()
                    # let frames already being written finish (atomic writes: no partial files)
                    for _, fut in pending:
                        try:
                            fut.result()
                        except Exception:
                            pass
                    raise
        timings["colour"] += colour_in[0]
        if done == 0:
            raise InputError(f"no frames to convert in {source} for the requested range")
        if preview is not None and preview_pick is not None:
            write_preview(preview, preview_pick[0], preview_pick[1], self.colour)
        return RunReport(written=written, skipped=skipped, frames=done, seconds=time.perf_counter() - t0,
                         input_space=input_space, output_space=self.output_space, timings=timings)

    def _groups(self, items: Iterable) -> Iterator:
        """``_Skip`` items one by one, ``_Work`` items in lists of up to ``batch`` frames of one size
        that fit ``max_pixels`` together. An error from upstream is raised only after the frames
        gathered before it have been handed on (they are finished: nothing is lost)."""
        group: list[_Work] = []
        limit = 1
        try:
            for item in items:
                if isinstance(item, _Skip):
                    yield item
                    continue
                if group and item.net_in.shape != group[0].net_in.shape:
                    yield group
                    group = []
                if not group:
                    h, w = item.net_in.shape[:2]
                    limit = max(1, min(self.batch, self.max_pixels // (h * w)))
                group.append(item)
                if len(group) >= limit:
                    yield group
                    group = []
        except GeneratorExit:  # closed by the consumer: nothing more is wanted
            raise
        except BaseException:
            if group:
                pending, group = group, []
                yield pending
            raise
        if group:
            yield group

    def _colour_and_write(self, path: pathlib.Path, lin: np.ndarray, mask: np.ndarray,
                          attrs: dict) -> tuple[float, float]:
        """Encode worker: colour out, then the atomic EXR write; returns (colour s, write s)."""
        t = time.perf_counter()
        result = FrameResult(hdr=self._to_output(lin), mask=mask, linear709=lin)
        t1 = time.perf_counter()
        self.write_frame(path, result, attrs)
        return t1 - t, time.perf_counter() - t1

    @staticmethod
    def _finish(item, written, timings) -> None:
        path, fut = item
        colour_s, write_s = fut.result()
        timings["colour"] += colour_s
        timings["encode"] += write_s
        written.append(path)

    @staticmethod
    def _check_frame_in(frame, source) -> np.ndarray:
        try:
            return Pipeline._check_frame(frame.rgb)
        except InputError as exc:
            raise InputError(f"{source} frame {frame.number}: {exc}") from None

    @staticmethod
    def _prepare_dir(out_dir: pathlib.Path) -> None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
        if not os.access(out_dir, os.W_OK):
            raise OutputError(f"output folder {out_dir} is not writable")

    @staticmethod
    def _count(reader, start, end, every) -> int | None:
        """How many frames ``reader.frames(start, end, every)`` yields (None when unknown)."""
        numbers = getattr(reader, "numbers", None)
        if numbers is not None:  # an image sequence: count the files that exist (gaps are skipped)
            if not numbers:
                return 0
            s = numbers[0] if start is None else start
            return sum(1 for n in numbers if n >= s and (end is None or n <= end) and (n - s) % every == 0)
        n = getattr(reader, "frame_count", None)
        first = getattr(reader, "first_number", 1)
        if not n:
            return None
        lo = max(start or first, first)
        hi = min(end if end is not None else first + n - 1, first + n - 1)
        return max(0, (hi - lo) // every + 1) if hi >= lo else 0

    def _decode_thread(self, frames: Iterable, timings: dict, prepare: Callable | None = None) -> Iterator:
        """Run the decoder (and ``prepare``, the colour-in step) in its own thread, handing the
        results over a bounded queue (room for one batch at least)."""
        q: queue.Queue = queue.Queue(maxsize=max(self.options.queue_size, self.batch))
        stop = threading.Event()

        def work():
            it = iter(frames)
            try:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        f = next(it)
                    except StopIteration:
                        break
                    timings["decode"] += time.perf_counter() - t
                    if prepare is not None:
                        f = prepare(f)
                    while not stop.is_set():
                        try:
                            q.put(f, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                q.put(_SENTINEL)
            except BaseException as exc:  # hand the error to the consumer
                q.put(exc)
            finally:
                close = getattr(it, "close", None)
                if close:
                    close()

        th = threading.Thread(target=work, name="decode", daemon=True)
        th.start()

        def gen():
            try:
                while True:
                    item = q.get()
                    if item is _SENTINEL:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()
                while th.is_alive():
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass
                    th.join(timeout=0.05)

        return gen()


@dataclasses.dataclass
class _Work:
    number: int
    target: pathlib.Path
    net_in: np.ndarray  # H x W x 3 float32 in the network input domain
    preview: bool


@dataclasses.dataclass
class _Skip:
    target: pathlib.Path  # already complete (--resume)


_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-")


def remove_stale_temporaries(folder: pathlib.Path) -> list[pathlib.Path]:
    """Delete temporary files left by a killed run (``.name.tmp-PID-...``) whose process is gone.

    Finished frames are never partial (they are renamed into place whole); this only tidies
    the hidden temporaries a SIGKILL or power cut can leave behind.
    """
    removed = []
    for entry in folder.iterdir():
        m = _TEMP_NAME.match(entry.name)
        if not m or not entry.is_file():
            continue
        pid = int(m.group(1))
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # another live process is writing it
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        else:
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


_PREVIEW_CM: list[ColourManager] = []


def _preview_colour() -> ColourManager:
    if not _PREVIEW_CM:
        _PREVIEW_CM.append(ColourManager(DEFAULT_CONFIG))
    return _PREVIEW_CM[0]


def write_preview(path: str | os.PathLike, net_in: np.ndarray, linear709: np.ndarray, colour: ColourManager,
                  stops: float = 3.0) -> None:
    """Side-by-side PNG: the input as displayed | the reconstruction ``stops`` darker, sRGB."""
    import OpenImageIO as oiio

    # the preview is for a display: encode with the built-in config's sRGB, whatever the user's config
    encode = _preview_colour().converter(NETWORK_OUTPUT_SPACE, NETWORK_INPUT_SPACE)
    dark = encode(np.ascontiguousarray(linear709 * np.float32(2.0 ** -stops)))
    left = net_in  # already sRGB code values: the input as a display shows it
    gap = np.ones((net_in.shape[0], max(4, net_in.shape[1] // 100), 3), np.float32)
    img = np.clip(np.concatenate([left, gap, dark], axis=1), 0.0, 1.0)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    buf = oiio.ImageBuf(np.ascontiguousarray((img * 255.0 + 0.5).astype(np.uint8)))
    if not buf.write(str(tmp)):
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write preview {out}: {buf.geterror()}")
    os.replace(tmp, out)


def default_progress(stream=None) -> Callable[[int, int | None, float], None]:
    """A one-line progress bar with frames/s and ETA (plain lines when not a terminal), on
    ``stream`` (default: ``sys.stderr`` as it is when called, not when this module was imported)."""
    stream = stream if stream is not None else sys.stderr
    tty = stream.isatty()
    last = [0.0]

    def show(done: int, total: int | None, elapsed: float) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - last[0] < (0.2 if tty else 5.0):
            return
        last[0] = now
        fps = done / elapsed if elapsed > 0 else 0.0
        if total:
            eta = (total - done) / fps if fps > 0 else float("inf")
            width = 30
            fill = int(width * done / total)
            bar = "#" * fill + "-" * (width - fill)
            eta_s = f"{eta:5.0f}s" if eta != float("inf") else "    ?"
            line = f"[{bar}] {done}/{total} frames  {fps:5.2f} frames/s  ETA {eta_s}"
        else:
            line = f"{done} frames  {fps:5.2f} frames/s"
        stream.write(("\r" + line) if tty else (line + "\n"))
        if tty and final:
            stream.write("\n")
        stream.flush()

    return show
