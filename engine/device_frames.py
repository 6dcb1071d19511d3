"""Frames on the inference device: integer code values up, half floats down, CUDA streams between.

The device path of the pipeline (``PipelineOptions(device_colour=True)``;
:class:`hdrlift.engine.pipeline.DeviceStep`) moves a frame like this:

1. **upload** (the file loop's decode thread): the decoded frame's integer planes
   (:class:`hdrlift.engine.io.video.CodeValues`: uint8 for 8-bit video, 16-bit words for 10-,
   12- and 16-bit) are copied into page-locked ("pinned") host memory and sent to the device
   with a non-blocking copy on the **upload stream**. There, on the same stream, the range,
   chroma upsampling and Y'CbCr matrix (:func:`hdrlift.engine.io.video.rgb_planes`, the very
   function the host decoder runs, here on tensors), the turn upright and colour in
   (:mod:`hdrlift.engine.device_colour`, then the clip to [0, 1]) run. An event marks the frame
   ready. Sources that are not videos (image sequences, stills) upload their float32 frames.
2. **compute** (the calling thread): the **compute stream** waits for the frames' events, runs
   the back end on the batch (:meth:`Backend.run_tensor`), checks the output is finite (a flag
   on the device, no synchronisation), converts it to the output space and casts it to half
   (EXR's own type; float32 with ``--float``).
3. **download** (queued by the calling thread, waited for by an EXR writer thread): the
   **download stream** waits for the compute event, copies the half frame, its mask and the
   flag into pinned host buffers, and records an event the writer thread waits on before it
   hands the buffers to OpenEXR.

Each stage of frame *n + 1* can thus run while frame *n* is in another: the three streams are
ordered only by the events. Tensors made on one stream and used on another are marked with
``record_stream`` so that the caching allocator does not reuse their memory early; pinned host
buffers come from torch's caching host allocator, which keeps a buffer until the copies that use
it have finished.

Without CUDA (``device="cpu"``) the same code runs with no streams, no events and no pinned
memory (``torch.Tensor.pin_memory`` is called only when ``torch.cuda.is_available()``): the
"upload" is a view of the numpy planes, every step runs in order, and the results are the very
tensors the EXR writer reads. That is how the CPU tests check the whole path.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch

from hdrlift.engine.io.video import CodeValues, rgb_planes


class TorchOps:
    """The array operations :func:`hdrlift.engine.io.video.rgb_planes` needs, for tensors
    (``video._NumpyOps`` is the numpy twin). Index and weight arrays are kept on the device per
    size (they are the same for every frame of a clip)."""

    def __init__(self) -> None:
        self._consts: dict[tuple, torch.Tensor] = {}

    @staticmethod
    def f32(a: torch.Tensor) -> torch.Tensor:
        if a.dtype == torch.int16:  # 16-bit words travel as int16 (their bits): back to 0..65535
            return (a.to(torch.int32) & 0xFFFF).to(torch.float32)
        return a.to(torch.float32)

    def const(self, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        key = (str(like.device), values.dtype.str, values.shape, values.tobytes())
        t = self._consts.get(key)
        if t is None:
            t = torch.as_tensor(values, device=like.device)
            if len(self._consts) > 64:
                self._consts.clear()
            self._consts[key] = t
        return t

    @staticmethod
    def stack(arrays: Sequence[torch.Tensor], axis: int) -> torch.Tensor:
        return torch.stack(list(arrays), dim=axis)


def _host_plane(plane: np.ndarray) -> np.ndarray:
    """One decoded plane as a C-contiguous native array torch can take: uint8 as is, 16-bit
    words (any byte order) as int16 holding the same bits (torch's uint16 support is partial)."""
    if plane.dtype.itemsize == 1:
        return np.ascontiguousarray(plane, dtype=np.uint8)
    return np.ascontiguousarray(plane, dtype=np.uint16).view(np.int16)


@dataclasses.dataclass
class DeviceFrame:
    """A frame on the device in the network's domain: ``net_in`` (3, H, W) float32 in [0, 1],
    ready once ``ready`` (a CUDA event, or None) has fired. ``shape`` is the frame's (H, W, 3)
    (what the file loop's batching groups by)."""

    net_in: torch.Tensor
    ready: "torch.cuda.Event | None"
    shape: tuple[int, int, int]
    stream: "torch.cuda.Stream | None" = None  # where net_in was made


@dataclasses.dataclass
class Download:
    """Results on their way to the host: ``tensors`` (pinned host tensors on CUDA, the results
    themselves on the CPU), complete once ``done`` has fired."""

    tensors: list[torch.Tensor]
    done: "torch.cuda.Event | None"

    def wait(self) -> list[np.ndarray]:
        """Block until the copies are complete (the calling thread only), then the numpy views."""
        if self.done is not None:
            self.done.synchronize()
        return [t.numpy() for t in self.tensors]


class DeviceFrames:
    """The upload, compute and download streams of one device (none on the CPU), and the moves
    between host and device described in the module docstring."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.cuda = self.device.type == "cuda"
        self.ops = TorchOps()
        if self.cuda:
            self.upload_stream = torch.cuda.Stream(device=self.device)
            self.compute_stream = torch.cuda.Stream(device=self.device)
            self.download_stream = torch.cuda.Stream(device=self.device)
        else:
            self.upload_stream = self.compute_stream = self.download_stream = None

    def _on(self, stream) -> contextlib.AbstractContextManager:
        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def _event(self, stream) -> "torch.cuda.Event | None":
        if stream is None:
            return None
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    def _to_device(self, host: list[np.ndarray]) -> list[torch.Tensor]:
        tensors = [torch.from_numpy(a) for a in host]
        if not self.cuda:
            return tensors
        if torch.cuda.is_available():
            tensors = [t.pin_memory() for t in tensors]
        return [t.to(self.device, non_blocking=True) for t in tensors]

    # -- 1. upload + colour in -----------------------------------------------------------
    def upload(self, frame: "CodeValues | np.ndarray",
               colour_in: Callable[[torch.Tensor], torch.Tensor]) -> DeviceFrame:
        """Decode thread: ``frame`` (integer code values, or a float32 H x W x 3 frame from a
        reader of pictures) -> :class:`DeviceFrame` in the network's domain."""
        with self._on(self.upload_stream):
            if isinstance(frame, CodeValues):
                planes = self._to_device([_host_plane(p) for p in frame.planes])
                rgb = torch.stack(list(rgb_planes(planes, frame.layout, frame.matrix, frame.full_range, frame.width,
                                                  frame.height, self.ops)), dim=0)
                rgb = rgb.clamp_(0.0, 1.0)
                if frame.rotate:
                    rgb = torch.rot90(rgb, frame.rotate, dims=(1, 2))
                shape = frame.shape
            else:
                a = np.ascontiguousarray(frame, dtype=np.float32)
                rgb = self._to_device([a])[0].permute(2, 0, 1)
                shape = a.shape
            net_in = colour_in(rgb).clamp_(0.0, 1.0)
            return DeviceFrame(net_in, self._event(self.upload_stream), tuple(shape), self.upload_stream)

    # -- 2. compute ----------------------------------------------------------------------
    def compute(self, frames: list[DeviceFrame], body: Callable[[torch.Tensor], list[list[torch.Tensor]]]):
        """Calling thread: ``body(batch)`` on the compute stream once the frames are ready
        (``batch``: (N, 3, H, W)); ``body`` returns, per frame, the tensors to download. Returns
        one :class:`Download` per frame, queued on the download stream."""
        stream = self.compute_stream
        with self._on(stream):
            for f in frames:
                if f.ready is not None:
                    stream.wait_event(f.ready)
                    f.net_in.record_stream(stream)  # made on the upload stream, used here
            batch = torch.stack([f.net_in for f in frames]) if len(frames) > 1 else frames[0].net_in.unsqueeze(0)
            results = body(batch)
        return [self.download(r) for r in results]

    # -- 3. download ---------------------------------------------------------------------
    def download(self, tensors: list[torch.Tensor]) -> Download:
        """Queue copies of ``tensors`` (made on the compute stream) to pinned host memory."""
        if not self.cuda:
            return Download([t.contiguous() for t in tensors], None)
        computed = self._event(self.compute_stream)
        stream = self.download_stream
        stream.wait_event(computed)
        hosts = []
        with self._on(stream):
            for t in tensors:
                t.record_stream(stream)
                h = torch.empty(t.shape, dtype=t.dtype, pin_memory=torch.cuda.is_available())
                h.copy_(t, non_blocking=True)
                hosts.append(h)
        return Download(hosts, self._event(stream))

    def settle(self) -> None:
        """Wait until what the calling thread queued on the device so far (parameters moved with
        pageable copies, say) is complete, before other streams use it."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def to_host(self, t: torch.Tensor, stream=None) -> np.ndarray:
        """A tensor back to the host now (previews: once or twice a run), after ``stream``."""
        if self.cuda and stream is not None:
            stream.synchronize()
        return t.detach().cpu().numpy()
