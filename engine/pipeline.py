"""The model and colour stages every entry point drives (CLI, gRPC server, host shims).

    decode (PyAV / OpenImageIO) -> colour in (OCIO: input space -> network input domain)
      -> model (registry, back end, tiles) -> colour out (OCIO: linear Rec.709 -> output space)
      -> encode (OpenEXR, atomic) | reply (server) | host image

:class:`Pipeline` holds one model on one back end and one output colour space. Its public stages
are what the server and the file loop call, so colour and checks exist once:

* :meth:`Pipeline.colour_in` -- check the frame (shape, finite values), convert it from its
  input space into the network's domain, clip to [0, 1];
* :meth:`Pipeline.infer_frames` -- frames of one size through the back end (tiled when large);
* :meth:`Pipeline.colour_out` -- check the network output is finite, convert it to the output
  space;
* :meth:`Pipeline.process` -- the three for one in-memory frame.

Files go through :func:`hdrlift.engine.convert.convert` (the one file loop) with a
:class:`LocalStep`: :meth:`Pipeline.convert` is that call.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Iterable, Iterator

import numpy as np

from hdrlift.engine.colour import (
    DEFAULT_OUTPUT_SPACE,
    NETWORK_OUTPUT_SPACE,
    ColourManager,
    choose_input_space,
)
from hdrlift.engine.convert import MAX_FRAME_PIXELS, ExrSettings, FrameStep, RunReport, Skip, Work, check_frame
from hdrlift.engine.convert import convert as convert_files
from hdrlift.engine.errors import HdrliftError, InputError, ModelError, OutputError
from hdrlift.engine.io.exr import COMPRESSIONS as EXR_COMPRESSIONS
from hdrlift.engine.backends import create_backend, weights_hash
from hdrlift.engine.backends.base import resolve_device
from hdrlift.engine.models import DEFAULT_MODEL, get_info, load_model
from hdrlift.engine.tiling import default_max_pixels, needs_tiling, run_tiled


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
    max_frame_pixels: int = MAX_FRAME_PIXELS  # larger frames are refused before they are decoded
    # colour in, the model and colour out on the back end's device, frames up as integer code values
    # and down as half floats (DeviceStep); None: on when the device is CUDA and the back end runs
    # on torch tensors (torch, tensorrt)
    device_colour: bool | None = None
    compile: bool = False  # torch back end: torch.compile the network (TorchBackend(compile=True))

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
    linear709: np.ndarray  # H x W x 3 float32, scene-linear Rec.709 (for previews)


class Pipeline:
    """Frame-by-frame HDR reconstruction with colour management. Thread-safe for ``process``."""

    def __init__(self, options: PipelineOptions | None = None, **overrides):
        opts = dataclasses.replace(options or PipelineOptions(), **overrides)
        opts.validate()
        self.options = opts
        self.colour = ColourManager(opts.ocio_config)
        self.output_space = self.colour.resolve(opts.output_space)
        info = get_info(opts.model)
        if info.kind == "fusion":
            raise ModelError(f"model {opts.model!r} merges exposure brackets; use hdr-merge --method {opts.model}")
        opts.device = resolve_device(opts.device)  # one line for "cuda" on a CPU build, before any loading
        self.model = load_model(opts.model, device=opts.device, weights=opts.weights)
        self.model_name = opts.model
        self.model_version = self.model.info.version
        # which weights made a frame (shipped, or the user's --weights): EXR headers, --resume checks
        self.weights = weights_hash(self.model) if self.model.info.needs_weights else None
        self.backend = create_backend(self.model, kind=opts.backend, device=opts.device,
                                      precision=opts.precision, cache_dir=opts.cache_dir,
                                      **({"compile": True} if opts.compile else {}))
        if opts.device_colour is None:
            self.device_colour = str(opts.device).startswith("cuda") and self.backend.name in ("torch", "tensorrt")
        else:
            self.device_colour = bool(opts.device_colour)
        self.max_pixels = opts.max_pixels or default_max_pixels(self.model.info, opts.device, self.backend.precision)
        self.batch = opts.batch or (4 if str(opts.device).startswith("cuda") else 1)
        self._lock = threading.Lock()
        try:
            self.chromaticities = self.colour.chromaticities(self.output_space)
        except HdrliftError:
            self.chromaticities = None

    # -- the stages ------------------------------------------------------------------------
    def input_space_for(self, tags=None, profile=None) -> str:
        """The input colour space: the options' choice, else the user's tag overrides, else an
        embedded ICC profile's, else the stream's tags, else sRGB (:func:`choose_input_space`)."""
        return choose_input_space(self.colour, given=self.options.input_space, tags=tags, profile=profile)

    def colour_in(self, rgb: np.ndarray, input_space: str) -> np.ndarray:
        """Colour in + checks: ``rgb`` (``H x W x 3`` code values in ``input_space``, a resolved
        name) -> the network's input domain (sRGB-encoded code values in the working primaries
        of ``input_space``: :meth:`working_space`), clipped to [0, 1]. InputError for a frame of
        the wrong shape or with NaN/Inf values."""
        return self._to_network(check_frame(rgb), input_space)

    def _to_network(self, rgb: np.ndarray, input_space: str) -> np.ndarray:
        net_in = self.colour.to_network(input_space)(rgb)
        np.clip(net_in, 0.0, 1.0, out=net_in)
        return net_in

    def working_space(self, input_space: str) -> str | None:
        """The linear space the network's output is in for frames from ``input_space``: None
        (linear Rec.709, the networks' own domain) for Rec.709 inputs, wider primaries for wider
        inputs (a P3 still, a BT.2020 clip) so that their gamut is not clipped
        (:meth:`ColourManager.working_space`)."""
        return self.colour.working_space(input_space)

    def colour_out(self, linear: np.ndarray, working: str | None = None) -> np.ndarray:
        """Colour out + checks: the network's output (scene-linear in ``working``; None: linear
        Rec.709) -> the output space. ModelError when the network produced NaN/Inf."""
        if not np.isfinite(linear).all():
            raise ModelError(f"model {self.model_name!r} produced non-finite values")
        return self.colour.from_network(working, self.output_space)(linear)

    def to_rec709(self, linear: np.ndarray, working: str | None) -> np.ndarray:
        """Linear in ``working`` -> linear Rec.709 (previews): unchanged for Rec.709."""
        return linear if working is None else self.colour.converter(working, NETWORK_OUTPUT_SPACE)(linear)

    def infer_frames(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Network-domain frames of one size -> [(linear H x W x 3, mask H x W)]. One frame goes
        through the tiler (whole when within ``max_pixels``); several go through the back end in
        one call, which the caller keeps within ``max_pixels`` (the file loop's batching and the
        server's batcher both do). No check of the values: :meth:`colour_out` does that."""
        if len(frames) == 1:
            return [run_tiled(self.backend, frames[0], max_pixels=self.max_pixels)]
        hdr, mask = self.backend.run(np.stack([f.transpose(2, 0, 1) for f in frames]))
        return [(np.ascontiguousarray(hdr[i].transpose(1, 2, 0)), np.ascontiguousarray(mask[i, 0]))
                for i in range(len(frames))]

    def process(self, rgb: np.ndarray, input_space: str | None = None) -> FrameResult:
        """Reconstruct one frame: ``rgb`` H x W x 3 code values in ``input_space``."""
        space = self.colour.resolve(input_space) if input_space else self.input_space_for(None)
        net_in = self.colour_in(rgb, space)
        lin, mask = self.infer_frames([net_in])[0]
        working = self.working_space(space)
        return FrameResult(hdr=self.colour_out(lin, working), mask=mask, linear709=self.to_rec709(lin, working))

    def attributes(self) -> dict:
        """How this pipeline makes frames, for :func:`hdrlift.engine.io.exr.frame_attributes`."""
        return {"output_space": self.output_space, "model": self.model_name, "model_version": self.model_version,
                "weights": self.weights, "chromaticities": self.chromaticities}

    # -- files -----------------------------------------------------------------------------
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
        progress=None,
        preview: str | os.PathLike | None = None,
        reader_options: dict | None = None,
        single: bool = False,
        confine=None,
        warn=None,
    ) -> RunReport:
        """Convert a video, image sequence or still to EXR files (:func:`hdrlift.engine.convert.convert`
        with a :class:`LocalStep`).

        ``output`` is a folder (frames become ``folder/<stem>.####.exr``), a pattern with
        ``####``/``%04d``, or, with ``single=True``, one EXR path for one frame. ``confine``: see
        :func:`hdrlift.engine.convert.convert` (a server's ``--root`` rule).
        """
        o = self.options
        step = DeviceStep(self) if self.device_colour else LocalStep(self)
        return convert_files(step, source, output,
                             exr_settings=ExrSettings(half=o.half, compression=o.compression, mask_layer=o.mask_layer),
                             ocio_config_name=self.colour.config_name, start=start, end=end, every=every,
                             resume=resume, overwrite=overwrite, progress=progress, preview=preview,
                             reader_options=reader_options, single=single, queue_size=o.queue_size,
                             encode_workers=o.encode_workers, batch=self.batch, confine=confine,
                             max_frame_pixels=o.max_frame_pixels, warn=warn)


class LocalStep(FrameStep):
    """The file loop's step for a local run: colour in on the decode thread, ``batch`` frames of
    one size per back-end call (within the tiling budget) on the calling thread, colour out in
    the encode workers."""

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.model = pipeline.model_name
        self.where = f"{pipeline.backend.name}/{pipeline.backend.device}"
        self._input_space = ""
        self._working: str | None = None

    @property
    def output_space(self) -> str:
        return self.p.output_space

    def input_space_for(self, tags, profile=None) -> str:
        return self.p.input_space_for(tags, profile)

    def open(self, input_space: str) -> None:
        self._input_space = input_space
        self._working = self.p.working_space(input_space)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return self.p._to_network(rgb, self._input_space)  # the file loop has checked the frame

    def run(self, items: Iterator, timings: dict) -> Iterator:
        for group in self._groups(items):
            if isinstance(group, Skip):
                yield group
                continue
            tm = time.perf_counter()
            outputs = self._infer(group)
            timings["model"] += time.perf_counter() - tm
            for w, out in zip(group, outputs):
                yield w, out

    def _infer(self, group: list[Work]) -> list:
        """The outputs of one group of frames, in order (what :meth:`run` hands on)."""
        return self.p.infer_frames([w.payload for w in group])

    def finish(self, output) -> tuple[np.ndarray, np.ndarray]:
        lin, mask = output
        return self.p.colour_out(lin, self._working), mask

    def attributes(self, output) -> dict:
        return self.p.attributes()

    def expected_attributes(self, input_space: str) -> dict[str, str]:
        a = self.p.attributes()
        want = {"hdrlift:model": a["model"], "hdrlift:model_version": a["model_version"],
                "hdrlift:colorspace": a["output_space"], "hdrlift:input_colorspace": input_space}
        if a["weights"]:
            want["hdrlift:weights"] = a["weights"]
        return want

    def preview(self, work: Work, output):
        return work.payload, self.p.to_rec709(output[0], self._working)

    def _groups(self, items: Iterable) -> Iterator:
        """``Skip`` items one by one, ``Work`` items in lists of up to ``batch`` frames of one size
        that fit ``max_pixels`` together. An error from upstream is raised only after the frames
        gathered before it have been handed on (they are finished: nothing is lost)."""
        group: list[Work] = []
        limit = 1
        try:
            for item in items:
                if isinstance(item, Skip):
                    yield item
                    continue
                if group and item.payload.shape != group[0].payload.shape:
                    yield group
                    group = []
                if not group:
                    h, w = item.payload.shape[:2]
                    limit = max(1, min(self.p.batch, self.p.max_pixels // (h * w)))
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


class DeviceStep(LocalStep):
    """The device path (``PipelineOptions(device_colour=True)``; default on CUDA with the torch
    and TensorRT back ends): a :class:`LocalStep` whose frames stay on the back end's device.

    The decode thread uploads each frame's integer code values and converts them to the
    network's domain there (:meth:`DeviceFrames.upload`: Y'CbCr -> R'G'B', then
    :mod:`hdrlift.engine.device_colour`'s translation of the same OCIO conversion
    ``colour_in`` applies, then the clip); the calling thread runs the back end on batches of
    device tensors (``Backend.run_tensor``), the finite check, colour out and the cast to half
    on the device, and queues the download; the EXR writers wait for their frame's download and
    write the half floats as they are. On CUDA the three run on their own streams
    (:mod:`hdrlift.engine.device_frames`); on the CPU the same code runs in order.

    A frame above the tiling budget goes through the tiler on the host (as :class:`LocalStep`
    does), between a download and an upload."""

    code_values = True  # the file loop hands video frames over as integer planes

    def __init__(self, pipeline: Pipeline):
        super().__init__(pipeline)
        from hdrlift.engine.device_frames import DeviceFrames

        self.frames = DeviceFrames(pipeline.backend.device)
        self.where = f"{self.where}, device colour"
        self._dtype = None
        self._in = self._out = None

    def open(self, input_space: str) -> None:
        import torch

        from hdrlift.engine import device_colour

        super().open(input_space)
        dev = self.frames.device
        self._in = device_colour.to_network(self.p.colour, input_space).to(dev)
        self._out = device_colour.from_network(self.p.colour, self._working, self.p.output_space).to(dev)
        self._dtype = torch.float16 if self.p.options.half else torch.float32
        self.frames.settle()  # the parameters are on the device before the streams use them

    def prepare(self, frame):
        return self.frames.upload(frame, self._in)

    def _infer(self, group: list[Work]) -> list:
        return self.frames.compute([w.payload for w in group], self._body(group))

    def _body(self, group: list[Work]):
        import torch

        def body(batch):
            n, _, h, w = batch.shape
            backend = self.p.backend
            if n == 1 and needs_tiling(backend, h, w, self.p.max_pixels):
                host = batch[0].permute(1, 2, 0).float().cpu().numpy()
                lin, mask = run_tiled(backend, host, max_pixels=self.p.max_pixels)
                hdr = torch.from_numpy(lin).permute(2, 0, 1).unsqueeze(0).to(batch.device)
                masks = torch.from_numpy(mask)[None, None].to(batch.device)
            else:
                hdr, masks = backend.run_tensor(batch)
            results = []
            for i, work in enumerate(group):
                lin = hdr[i]
                finite = torch.isfinite(lin).all().reshape(1)
                out = self._out(lin).permute(1, 2, 0).to(self._dtype).contiguous()
                tensors = [out, masks[i, 0].to(self._dtype).contiguous(), finite]
                if work.preview:
                    tensors.append(lin.permute(1, 2, 0).float().contiguous())
                results.append(tensors)
            return results

        return body

    def finish(self, output) -> tuple[np.ndarray, np.ndarray]:
        arrays = output.wait()
        if not bool(arrays[2][0]):
            raise ModelError(f"model {self.p.model_name!r} produced non-finite values")
        return arrays[0], arrays[1]

    def preview(self, work: Work, output):
        arrays = output.wait()
        frame = work.payload
        net_in = np.ascontiguousarray(self.frames.to_host(frame.net_in, frame.stream).transpose(1, 2, 0))
        return net_in, self.p.to_rec709(np.ascontiguousarray(arrays[3], dtype=np.float32), self._working)
