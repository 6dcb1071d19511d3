"""The one file loop: a video, image sequence or still -> an OpenEXR sequence (or one EXR).

Every entry point that converts files runs this loop (``hdr-video``, ``hdr-image``, the server's
path jobs, ``hdr-video --server``). What differs between a local run and a remote one is only
the :class:`FrameStep` plugged in, the step that turns decoded frames into HDR:

* :class:`hdrlift.engine.pipeline.LocalStep`: colour in, the model's back end, colour out, on
  this machine (:class:`~hdrlift.engine.pipeline.Pipeline`);
* :class:`hdrlift.engine.remote.RemoteStep`: the frames go to hdrlift-serve servers through
  :class:`hdrlift.plugin.Client` streams, which do the colour and the model there.

Everything else exists once, here: frame selection (``start``/``end``/``every``), output naming
(``folder/<stem>.####.exr``, ``####``/``%04d`` patterns, one file for a still), resume and
overwrite, the bounded queues between stages, the EXR writer pool, progress, the preview and the
run report. Three stages:

* a decode thread decodes each frame, skips the ones ``--resume`` finds complete, checks the
  pixels and hands them to the step's ``prepare`` (colour in, for a local run);
* the calling thread drives the step's ``run`` (inference; for a remote run, stream threads);
* ``encode_workers`` threads run the step's ``finish`` (colour out) and write the EXR
  atomically, in the order the frames were decoded.

An error raised by a stage reaches the caller after every frame before it has been written
(writes are atomic: no frame is ever partial).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import pathlib
import queue
import re
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from hdrlift.engine.defaults import MAX_FRAME_PIXELS
from hdrlift.engine.errors import InputError, OutputError

_SENTINEL = object()
Progress = Callable[[int, "int | None", float], None]


@dataclasses.dataclass
class RunReport:
    written: list[pathlib.Path]
    skipped: list[pathlib.Path]
    frames: int
    seconds: float
    input_space: str
    output_space: str
    timings: dict[str, float]  # busy seconds per stage: decode, colour (in + out), model, encode
    model: str = ""
    where: str = ""  # "torch/cpu", or the servers' addresses
    notes: list[str] = dataclasses.field(default_factory=list)  # warnings about the source

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def servers(self) -> str:
        """The servers' addresses of a remote run (``where``)."""
        return self.where


@dataclasses.dataclass
class ExrSettings:
    half: bool = True
    compression: str = "zip"
    mask_layer: bool = False  # extra layer "mask.Y": which pixels were expanded


@dataclasses.dataclass
class Work:
    """A decoded frame on its way: ``payload`` is what the step's ``prepare`` made of it."""

    number: int
    target: pathlib.Path
    payload: Any
    preview: bool
    alpha: np.ndarray | None = None  # the source's alpha (straight), written as the EXR's A
    pts: int | None = None  # the frame's timestamp in its stream (video masters keep the timing)


@dataclasses.dataclass
class Skip:
    target: pathlib.Path  # already complete (--resume)


class FrameStep(abc.ABC):
    """The "infer these frames" step a conversion plugs into :func:`convert`."""

    #: what produced the frames, for the report: model name, and where it ran
    model: str = ""
    where: str = ""
    #: True: ``prepare`` takes a video's frames as integer code values
    #: (:class:`hdrlift.engine.io.video.CodeValues`, before the Y'CbCr matrix) instead of float
    #: R'G'B' (frames of pictures still come as floats): the device path uploads them as they are
    code_values: bool = False

    @property
    @abc.abstractmethod
    def output_space(self) -> str:
        """The colour space the frames come out in."""

    @abc.abstractmethod
    def input_space_for(self, tags, profile=None) -> str:
        """The input colour space: the user's choice, else the stream's tags or a still's
        embedded ICC profile (:func:`hdrlift.engine.colour.choose_input_space`)."""

    def open(self, input_space: str) -> None:
        """Called once the input space is known, before the first ``prepare``."""

    @abc.abstractmethod
    def prepare(self, rgb: np.ndarray) -> Any:
        """Decode thread: a checked ``H x W x 3`` float32 frame (or, for a step with
        ``code_values``, a video frame's :class:`~hdrlift.engine.io.video.CodeValues`) -> the
        step's payload."""

    @abc.abstractmethod
    def run(self, items: Iterator, timings: dict) -> Iterator:
        """Calling thread: ``items`` yields :class:`Work` and :class:`Skip`; yield each
        :class:`Skip` and a ``(Work, output)`` pair per frame, in the order they came."""

    @abc.abstractmethod
    def finish(self, output) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode worker: a step output -> (HDR ``H x W x 3`` in ``output_space``, mask or None)."""

    @abc.abstractmethod
    def attributes(self, output) -> dict:
        """The EXR attributes that say how a frame was made (:func:`exr.frame_attributes`)."""

    def expected_attributes(self, input_space: str) -> dict[str, str]:
        """EXR header values a frame made by this run will carry (``hdrlift:model``...): what
        ``--resume`` checks the finished frames against, so that it never mixes runs."""
        return {}

    def preview(self, work: Work, output) -> tuple[np.ndarray, np.ndarray] | None:
        """``(input as displayed, linear Rec.709 result)`` for ``--preview``; None: no preview."""
        return None

    def account(self, timings: dict, elapsed: float) -> None:
        """Fill in the timings the step could not measure itself (at the end of a run)."""


class FrameSink(abc.ABC):
    """Where the file loop's finished frames go: an EXR sequence or one EXR (:class:`ExrSink`),
    or a video master (:class:`hdrlift.engine.delivery.MasterSink`)."""

    #: writer threads; 1 keeps the frames in order (a video), None: the loop's ``encode_workers``
    workers: int | None = None

    @abc.abstractmethod
    def open(self, reader, step: FrameStep, input_space: str, start: int | None, end: int | None) -> None:
        """Before the first frame: make folders, check what ``--resume`` would keep..."""

    @abc.abstractmethod
    def target(self, number: int, may_skip: bool) -> Any:
        """Decode thread: where frame ``number`` goes, or a :class:`Skip` when ``--resume`` finds
        it finished (``may_skip`` False: make it anyway). Raises when it exists and may not be
        replaced."""

    def finished(self, target) -> bool:
        """Calling thread, just before a frame is handed to a writer: made meanwhile?"""
        return False

    @abc.abstractmethod
    def write(self, work: "Work", hdr: np.ndarray, mask: np.ndarray | None, output) -> None:
        """Writer thread: one finished frame (``output``: the step's, for its attributes)."""

    def close(self) -> list[pathlib.Path]:
        """After the last frame: what was written beyond the frames' targets (a video)."""
        return []

    def abort(self) -> None:
        """After an error: leave nothing half-written."""


class ExrSink(FrameSink):
    """An OpenEXR sequence (``folder``, ``name.####.exr``) or, with ``single``, one EXR: atomic
    writes, ``--resume``/``--overwrite``, a server's ``confine`` rule at every write."""

    def __init__(self, source, output, *, single: bool = False, settings: ExrSettings | None = None,
                 ocio_config_name: str = "", resume: bool = False, overwrite: bool = False,
                 confine: Callable[[pathlib.Path], None] | None = None):
        self.source, self.single = str(source), single
        self.settings = settings or ExrSettings()
        self.ocio_config_name = ocio_config_name
        self.resume, self.overwrite, self.confine = resume, overwrite, confine
        if single:
            self.path = pathlib.Path(output)
            if self.path.suffix.lower() != ".exr":
                raise OutputError(f"output must be an .exr file, got {_shown(str(output))}")
            self.pattern = None
            self.folder = self.path.parent
        else:
            self.pattern = OutputPattern.for_source(source, output)
            self.folder = self.pattern.folder

    def path_for(self, number: int) -> pathlib.Path:
        return self.path if self.pattern is None else self.pattern.path(number)

    def open(self, reader, step, input_space, start, end) -> None:
        self.step, self.input_space = step, input_space
        if self.confine is not None:
            self.confine(self.folder)
        prepare_dir(self.folder)
        remove_stale_temporaries(self.folder)
        if self.resume and self.pattern is not None:
            _check_resumable(self.pattern, start, end, step.expected_attributes(input_space))

    def target(self, number: int, may_skip: bool):
        from hdrlift.engine.io.exr import is_complete_exr

        path = self.path_for(number)
        if path.exists():
            if self.resume and may_skip and is_complete_exr(path):
                return Skip(path)
            if not (self.resume or self.overwrite):
                how = ("--overwrite to replace it" if self.single
                       else "--resume to skip finished frames or --overwrite")
                raise OutputError(f"{path} exists; pass {how}")
        return path

    def finished(self, target) -> bool:
        from hdrlift.engine.io.exr import is_complete_exr

        return self.resume and target.exists() and is_complete_exr(target)

    def write(self, work, hdr, mask, output) -> None:
        from hdrlift.engine.io import exr

        how = {"input_space": self.input_space, **self.step.attributes(output)}  # a server says what it resolved
        attrs = exr.frame_attributes(source=self.source, frame=work.number, ocio_config=self.ocio_config_name, **how)
        layers = {"mask": mask} if self.settings.mask_layer and mask is not None else None
        path = work.target
        if self.confine is not None:
            self.confine(path)
        exr.write_exr(path, hdr, half=self.settings.half, compression=self.settings.compression, attributes=attrs,
                      layers=layers, alpha=work.alpha)
        if self.confine is not None:
            try:
                self.confine(path)  # the folder may have been swapped for a link while the frame was written
            except BaseException:
                path.unlink(missing_ok=True)
                raise


# --------------------------------------------------------------------------- output naming
_FIELD = re.compile(r"%0?(\d*)d|#+")
MAX_FIELD_WIDTH = 10  # frame numbers up to 10 digits


class OutputPattern:
    """Where frame ``n`` goes: ``prefix`` + ``n`` zero-padded to ``width`` + ``suffix``.

    The frame field (``####`` or ``%04d``) is one, in the file name, never in a folder: the folder
    of every frame is the same, known before anything is written (a server confines it once and
    checks it again at each write). What comes from a source's name is literal: ``take#1.mp4``
    gives ``take#1.0001.exr``, never a second field.
    """

    def __init__(self, prefix: str, width: int, suffix: str):
        self.prefix, self.width, self.suffix = prefix, width, suffix

    @classmethod
    def parse(cls, pattern: str | os.PathLike) -> "OutputPattern":
        s = str(pattern)
        folder, name = os.path.split(s)
        if _FIELD.search(folder):
            raise OutputError(f"output pattern {_shown(s)}: the frame number field (#### or %04d) must be in the "
                              "file name, not in a folder")
        fields = list(_FIELD.finditer(name))
        if not fields:
            raise OutputError(f"output pattern {_shown(s)} has no frame number field (#### or %04d)")
        if len(fields) > 1:
            raise OutputError(f"output pattern {_shown(s)} has {len(fields)} frame number fields; give one")
        m = fields[0]
        width = len(m.group(0)) if m.group(0).startswith("#") else int(m.group(1) or 1)
        if not 1 <= width <= MAX_FIELD_WIDTH:
            raise OutputError(f"output pattern {_shown(s)}: a frame number field is 1 to {MAX_FIELD_WIDTH} digits wide")
        return cls(os.path.join(folder, name[:m.start()]), width, name[m.end():])

    @classmethod
    def for_source(cls, source: str | os.PathLike, out: str | os.PathLike) -> "OutputPattern":
        """A pattern as given, or a folder: ``folder/<source stem>.####.exr`` (the stem literal)."""
        out_s = str(out)
        if _FIELD.search(os.path.basename(out_s)) or _FIELD.search(os.path.dirname(out_s)):
            return cls.parse(out_s)
        if out_s.lower().endswith(".exr"):
            raise OutputError(f"output {_shown(out_s)} names one file; a sequence needs a folder or a pattern "
                              "such as name.####.exr (hdr-image writes one file)")
        name = pathlib.Path(str(source)).name
        if os.path.exists(str(source)):  # a file: its name is literal (take#1.mp4, shot_%d.mov)
            stem = re.sub(r"\.[^.]+$", "", name)
        else:  # a sequence pattern: its frame field is not part of the name
            stem = re.sub(r"(\.?[#]+|\.?%0?\d*d)?\.[^.]+$", "", name)
        stem = stem or "frame"
        return cls(os.path.join(out_s, stem + "."), 4, ".exr")

    @property
    def folder(self) -> pathlib.Path:
        return pathlib.Path(os.path.dirname(self.prefix) or ".")

    def path(self, number: int) -> pathlib.Path:
        return pathlib.Path(f"{self.prefix}{number:0{self.width}d}{self.suffix}")

    def existing(self) -> dict[int, pathlib.Path]:
        """The frames already in the folder: number -> path."""
        folder, start = self.folder, os.path.basename(self.prefix)
        name = re.compile(re.escape(start) + r"(\d+)" + re.escape(self.suffix) + r"\Z")
        found = {}
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return {}
        for e in entries:
            m = name.match(e.name)
            if m and (len(m.group(1)) == self.width or (len(m.group(1)) > self.width and m.group(1)[0] != "0")):
                found[int(m.group(1))] = folder / e.name
        return found

    def __str__(self) -> str:
        return f"{self.prefix}{'#' * self.width}{self.suffix}"


def _shown(text: str, limit: int = 200) -> str:
    """A user's string in a message: quoted, and cut when long (never echo unbounded input)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def output_path(pattern: str | os.PathLike, number: int) -> pathlib.Path:
    """Expand ``name.####.exr`` or ``name.%04d.exr`` with a frame number."""
    return OutputPattern.parse(pattern).path(number)


def sequence_pattern(source: str | os.PathLike, out: str | os.PathLike) -> str:
    """Turn an output folder into ``folder/<source stem>.####.exr``; keep explicit patterns."""
    return str(OutputPattern.for_source(source, out))


def count_frames(reader, start, end, every) -> int | None:
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


def check_frame(rgb) -> np.ndarray:
    """``rgb`` as a C-contiguous float32 ``H x W x 3`` array of finite values, or InputError."""
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


def check_range(start: int | None, end: int | None, every: int) -> None:
    if every < 1:
        raise InputError(f"--every must be >= 1, got {every}")
    if start is not None and end is not None and end < start:
        raise InputError(f"frame range {start}-{end} is empty")


def _check_resumable(pattern: OutputPattern, start: int | None, end: int | None, expected: dict[str, str]) -> None:
    """``--resume`` keeps finished frames only when this run would make them the same way (model,
    weights, colour spaces): a mismatch is refused, naming the frames and how they differ."""
    from hdrlift.engine.io.exr import read_attributes

    differing: dict[str, list[int]] = {}
    for n, path in sorted(pattern.existing().items()):
        if (start is not None and n < start) or (end is not None and n > end):
            continue
        attrs = read_attributes(path)
        if attrs is None:
            continue  # not a complete EXR: it is made again
        if "hdrlift:model" not in attrs:
            how = "was not written by hdrlift"
        else:
            diff = [f"{k.split(':')[-1]} {attrs[k]} (this run: {v})" for k, v in expected.items()
                    if k in attrs and str(attrs[k]) != str(v)]
            if not diff:
                continue
            how = "was made with " + ", ".join(diff)
        differing.setdefault(how, []).append(n)
    if differing:
        parts = [f"frames {_ranges(ns)} {how}" for how, ns in differing.items()]
        raise OutputError(f"--resume would mix runs in {pattern.folder}: " + "; ".join(parts) +
                          "; use another output or --overwrite")


def _ranges(numbers: list[int]) -> str:
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(out) if len(out) <= 8 else ",".join(out[:8]) + f",... ({len(numbers)} frames)"


def prepare_dir(out_dir: pathlib.Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"output folder {out_dir} is not writable")


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


# --------------------------------------------------------------------------- the loop
def convert(
    step: FrameStep,
    source: str | os.PathLike,
    output: str | os.PathLike | FrameSink,
    *,
    exr_settings: ExrSettings | None = None,
    ocio_config_name: str = "",
    start: int | None = None,
    end: int | None = None,
    every: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    preview: str | os.PathLike | None = None,
    reader_options: dict | None = None,
    single: bool = False,
    queue_size: int = 4,
    encode_workers: int = 2,
    batch: int = 1,
    confine: Callable[[pathlib.Path], None] | None = None,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    warn: Callable[[str], None] | None = None,
) -> RunReport:
    """Convert a video, image sequence or still through ``step`` into ``output``.

    ``output`` is a folder (frames become ``folder/<stem>.####.exr``), a pattern with
    ``####``/``%04d``, or, with ``single=True``, one EXR path for one frame (a still, or the one
    frame ``start``-``end`` selects): an :class:`ExrSink` made with ``exr_settings``,
    ``ocio_config_name``, ``resume``, ``overwrite`` and ``confine``. Or a :class:`FrameSink`
    (a video master). ``confine(path)`` (a server's ``--root`` rule) is called on the output
    folder before it is made, and on every file before and after it is written; it raises when
    the path resolves outside what is allowed. ``warn(message)`` hears what the source says the
    user should know (an interlaced video converted as progressive...); the report keeps the same
    lines in ``notes``.
    """
    from hdrlift.engine.io.images import open_source

    check_range(start, end, every)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: resume keeps finished frames, overwrite "
                         "replaces them")
    sink = output if isinstance(output, FrameSink) else ExrSink(
        source, output, single=single, settings=exr_settings, ocio_config_name=ocio_config_name, resume=resume,
        overwrite=overwrite, confine=confine)
    reader = open_source(source, **(reader_options or {}))
    t0 = time.perf_counter()
    timings = {"decode": 0.0, "colour": 0.0, "model": 0.0, "encode": 0.0}
    written: list[pathlib.Path] = []
    skipped: list[pathlib.Path] = []
    with reader:
        notes = list(getattr(reader, "notes", []))
        for note in notes:
            if warn is not None:
                warn(note)
        w, h = int(reader.width), int(reader.height)
        if w * h > max_frame_pixels:
            raise InputError(f"{source} is {w}x{h}, above the {max_frame_pixels:,}-pixel frame limit; pass "
                             f"--max-frame-pixels {w * h} to convert it (it takes about 60 bytes of memory a pixel)")
        total = count_frames(reader, start, end, every)
        if single and total != 1:
            many = f"has {total} frames" if total else "is a video"
            raise InputError(f"{source} {many}; one EXR holds one frame: pick it (hdr-image --frame N) or convert "
                             "the sequence with hdr-video")
        input_space = step.input_space_for(getattr(reader, "tags", None), getattr(reader, "profile", None))
        step.open(input_space)
        sink.open(reader, step, input_space, start, end)

        mid = None if total is None else total // 2
        seen = [0]
        colour_in = [0.0]  # touched by the decode thread only; added to timings at the end

        def prepare(frame) -> Work | Skip:
            """Decode thread: skip a finished frame, or bring the frame to the step's payload."""
            seen[0] += 1
            # the preview shows the first frame and the middle one
            want_preview = preview is not None and (seen[0] == 1 or seen[0] - 1 == mid)
            target = sink.target(frame.number, may_skip=not want_preview)
            if isinstance(target, Skip):
                return target
            code = getattr(frame, "code", None)
            if code is not None:  # integer code values: finite by construction, shaped by the reader
                pixels = code
            else:
                try:
                    pixels = check_frame(frame.rgb)
                except InputError as exc:
                    raise InputError(f"{source} frame {frame.number}: {exc}") from None
            t = time.perf_counter()
            payload = step.prepare(pixels)
            colour_in[0] += time.perf_counter() - t
            return Work(frame.number, target, payload, want_preview, getattr(frame, "alpha", None),
                        getattr(frame, "pts", None))

        code_values = {"code_values": True} if step.code_values and getattr(reader, "code_values", False) else {}
        items = DecodeThread(reader.frames(start=start, end=end, every=every, **code_values), timings, prepare,
                             max(queue_size, batch))
        preview_pick = None
        pending: list[tuple[Any, Future]] = []
        done = 0

        def write(work: Work, out) -> tuple[float, float]:
            """Writer thread: the step's finish (colour out), then the sink's write."""
            t = time.perf_counter()
            hdr, mask = step.finish(out)
            t1 = time.perf_counter()
            sink.write(work, hdr, mask, out)
            return t1 - t, time.perf_counter() - t1

        def finish_oldest() -> None:
            target, fut = pending.pop(0)
            colour_s, write_s = _result(fut)
            timings["colour"] += colour_s
            timings["encode"] += write_s
            written.append(target)

        workers = sink.workers or encode_workers
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="write") as pool:
                results = step.run(items, timings)
                try:
                    for item in results:
                        if isinstance(item, Skip):
                            skipped.append(item.target)
                            done += 1
                            if progress:
                                progress(done, total, time.perf_counter() - t0)
                            continue
                        w, out = item
                        if w.preview:
                            preview_pick = step.preview(w, out) or preview_pick
                        if sink.finished(w.target):
                            skipped.append(w.target)
                            done += 1
                            continue
                        # bounded: wait for the oldest write before queueing more
                        while len(pending) >= queue_size:
                            finish_oldest()
                        pending.append((w.target, pool.submit(write, w, out)))
                        done += 1
                        if progress:
                            progress(done, total, time.perf_counter() - t0)
                    while pending:
                        finish_oldest()
                except BaseException:
                    results.close()
                    # let frames already being written finish (atomic writes: no partial files)
                    for _, fut in pending:
                        try:
                            fut.result()
                        except Exception:
                            pass
                    raise
                finally:
                    items.close()  # the decoder stops before the reader closes under it
            if done == 0:
                raise InputError(f"no frames to convert in {source} for the requested range")
            extra = sink.close()
        except BaseException:
            sink.abort()
            raise
    timings["colour"] += colour_in[0]
    elapsed = time.perf_counter() - t0
    step.account(timings, elapsed)
    if extra:  # a video: its one file is what was written
        written = list(extra)
    if preview is not None and preview_pick is not None:
        write_preview(preview, *preview_pick)
    return RunReport(written=written, skipped=skipped, frames=done, seconds=time.perf_counter() - t0,
                     input_space=input_space, output_space=step.output_space, timings=timings,
                     model=step.model, where=step.where, notes=notes)


class DecodeThread:
    """Runs the decoder (and ``prepare``, the colour-in step) in its own thread and hands the
    results over a bounded queue of ``size`` items: an iterator any one thread at a time may
    advance (a remote run's stream threads take turns under a lock).

    ``close()`` may be called from any thread, at any time, more than once: it stops the decoder
    and returns only once the decoder thread has ended, so the reader can be closed after it
    (PyAV must never decode from a container another thread has closed).
    """

    def __init__(self, frames: Iterable, timings: dict, prepare: Callable, size: int):
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, args=(frames, timings, prepare), name="decode",
                                        daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self, frames: Iterable, timings: dict, prepare: Callable) -> None:
        it = iter(frames)
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    f = next(it)
                except StopIteration:
                    break
                timings["decode"] += time.perf_counter() - t
                self._put(prepare(f))
            self._put(_SENTINEL)
        except BaseException as exc:  # hand the error to the consumer
            self._put(exc)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    def __iter__(self) -> "DecodeThread":
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._q.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    self._done = True
                    raise StopIteration from None
        if item is _SENTINEL:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._done = True
        while self._thread.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


def _result(fut: Future):
    """``fut.result()``, waking up now and then: a Ctrl-C or SIGTERM the OS handed to another
    thread runs its handler (in the main thread) within 0.2 s instead of after the write."""
    while True:
        try:
            return fut.result(timeout=0.2)
        except TimeoutError:
            continue


# --------------------------------------------------------------------------- preview, progress
_PREVIEW_CM: list = []


def _preview_colour():
    from hdrlift.engine.colour import DEFAULT_CONFIG, ColourManager

    if not _PREVIEW_CM:
        _PREVIEW_CM.append(ColourManager(DEFAULT_CONFIG))
    return _PREVIEW_CM[0]


def write_preview(path: str | os.PathLike, net_in: np.ndarray, linear709: np.ndarray, stops: float = 3.0) -> None:
    """Side-by-side PNG: the input as displayed | the reconstruction ``stops`` darker, sRGB."""
    import OpenImageIO as oiio

    from hdrlift.engine.colour import NETWORK_INPUT_SPACE, NETWORK_OUTPUT_SPACE

    # the preview is for a display: encode with the built-in config's sRGB, whatever the user's config
    encode = _preview_colour().converter(NETWORK_OUTPUT_SPACE, NETWORK_INPUT_SPACE)
    dark = encode(np.ascontiguousarray(linear709 * np.float32(2.0 ** -stops)))
    left = net_in  # already sRGB code values: the input as a display shows it
    gap = np.ones((net_in.shape[0], max(4, net_in.shape[1] // 100), 3), np.float32)
    img = np.clip(np.concatenate([left, gap, dark], axis=1), 0.0, 1.0)
    out = pathlib.Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write preview {out}: {exc.strerror or exc}") from None
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    buf = oiio.ImageBuf(np.ascontiguousarray((img * 255.0 + 0.5).astype(np.uint8)))
    if not buf.write(str(tmp)):
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write preview {out}: {buf.geterror()}")
    os.replace(tmp, out)


def default_progress(stream=None) -> Progress:
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
