"""One conversion as a farm sees it: input, output pattern, frame range, chunk size, model, servers.

`plan` checks everything that can be checked on the submitting machine (the input exists and has
those frames, the output pattern has a frame field, the range and chunk size make sense, the model
is known, the server addresses are well formed) and raises `FarmError` with a one-line message
otherwise. The job generators (`openjd`, `opencue`) only ever see a valid `Conversion`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

from hdrlift.engine.errors import HdrliftError

#: Server modes: a per-worker-session hdrlift-serve (OpenJD only), none (each task loads the
#: model itself), or a comma-separated list of HOST:PORT addresses.
SESSION = "session"
NONE = "none"

_FRAME_FIELD = re.compile(r"#+|%0?\d*d")
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


class FarmError(HdrliftError):
    """A conversion that cannot become a farm job: bad range, chunk size, paths, model or server."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A checked conversion. Paths are absolute, as the submitting machine sees them."""

    input: pathlib.Path  # a video file, or an image sequence pattern (name.####.png)
    input_is_sequence: bool
    output_dir: pathlib.Path
    output_name: str  # file name pattern with a frame field, e.g. shot.####.exr
    first: int
    last: int
    chunk: int
    model: str
    output_colorspace: str
    device: str = "cpu"
    backend: str = "auto"
    server: str = SESSION  # SESSION, NONE or "host:port[,host:port...]"

    @property
    def output(self) -> pathlib.Path:
        return self.output_dir / self.output_name

    @property
    def name(self) -> str:
        """A short job name: the input's file name and the frame range."""
        return f"hdrlift {self.input.name} {self.first}-{self.last}"

    def chunks(self) -> list[tuple[int, int]]:
        return chunk_ranges(self.first, self.last, self.chunk)

    def hdr_video_args(self, frames: str, server: str | None) -> list[str]:
        """The arguments of one chunk's ``hdr-video`` run (after the program name)."""
        return hdr_video_args(str(self.input), str(self.output), frames=frames, model=self.model,
                              output_colorspace=self.output_colorspace, device=self.device,
                              backend=self.backend, server=server)


def hdr_video_args(input: str, output: str, *, frames: str, model: str, output_colorspace: str,  # noqa: A002
                   device: str, backend: str, server: str | None) -> list[str]:
    """``hdr-video`` arguments for one chunk: ``--frames A-B --resume``, so a chunk that runs
    again (killed, requeued) skips the frames that are complete and rewrites the rest. With a
    server, the device and back end are the server's (hdr-video refuses them with --server)."""
    args = [input, output, "--model", model, "--output-colorspace", output_colorspace,
            "--frames", frames, "--resume", "--quiet"]
    if server:
        args += ["--server", server]
    else:
        args += ["--device", device, "--backend", backend]
    return args


def chunk_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """``first..last`` in inclusive ranges of ``size`` frames (the last one may be shorter)."""
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


def parse_frames(text: str) -> tuple[int, int]:
    """``A-B`` or ``N`` (inclusive source frame numbers, from 1)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text or "")
    if not m:
        raise FarmError(f"frame range must be START-END or N, got {text!r}")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    if first < 1:
        raise FarmError(f"frame numbers start at 1, got {text!r}")
    if last < first:
        raise FarmError(f"frame range {text!r} ends before it starts")
    return first, last


def check_server(server: str, *, session_allowed: bool = True) -> str:
    """``session``, ``none`` or comma-separated HOST:PORT addresses; returns it normalised."""
    s = (server or "").strip()
    if s.lower() in (SESSION, NONE):
        s = s.lower()
        if s == SESSION and not session_allowed:
            raise FarmError("--server session needs worker sessions (OpenJD); give HOST:PORT addresses or none")
        return s
    parts = [p.strip() for p in s.split(",")]
    bad = [p for p in parts if not _ADDRESS.fullmatch(p) or not 0 < int(p.rsplit(":", 1)[1]) < 65536]
    if not s or bad:
        raise FarmError(f"--server must be session, none or HOST:PORT[,HOST:PORT...], got {server!r}")
    return ",".join(parts)


def split_output(output: str | os.PathLike, input_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    """An output pattern (``dir/name.####.exr``) or folder as (absolute folder, file name pattern).

    A folder gets ``<input stem>.####.exr``, as hdr-video names it; a path ending in ``.exr``
    must carry the frame field in its file name."""
    out = pathlib.Path(os.path.abspath(os.fspath(output)))
    text = os.fspath(output)
    if _FRAME_FIELD.search(text):
        if not _FRAME_FIELD.search(out.name) or _FRAME_FIELD.search(str(out.parent)):
            raise FarmError(f"output pattern {text!r}: the frame field (#### or %04d) must be in the file name")
        if not out.name.lower().endswith(".exr"):
            raise FarmError(f"output pattern {text!r} must end in .exr")
        return out.parent, out.name
    if text.lower().endswith(".exr"):
        raise FarmError(f"output pattern {text!r} has no frame number field (#### or %04d)")
    stem = re.sub(r"(\.?#+|\.?%0?\d*d)?\.[^.]+$", "", input_path.name) or "frame"
    return out, f"{stem}.####.exr"


def frame_file(name: str, number: int) -> str:
    """``name.####.exr`` / ``name.%04d.exr`` with the frame number (as hdr-video names frames)."""
    m = _FRAME_FIELD.search(name)
    width = len(m.group(0)) if m.group(0).startswith("#") else int(m.group(0)[1:-1] or 1)
    return name[: m.start()] + f"{number:0{width}d}" + name[m.end():]


def _existing_frames(out_dir: pathlib.Path, out_name: str, first: int, last: int) -> list[str]:
    if not out_dir.is_dir():
        return []
    present = set(os.listdir(out_dir))
    return [f for f in (frame_file(out_name, n) for n in range(first, last + 1)) if f in present]


def _probe(input_path: pathlib.Path) -> tuple[bool, int, int]:
    """(is_sequence, first frame, last frame) of a video or image sequence."""
    from hdrlift.engine.io.images import SequenceReader, StillReader, open_source

    reader = open_source(input_path)  # InputError: missing, a folder, unreadable
    try:
        if isinstance(reader, StillReader):
            raise FarmError(f"{input_path}: a single image; farm jobs convert videos and image sequences "
                            "(use hdr-image for a still)")
        if isinstance(reader, SequenceReader):
            return True, reader.first_number, reader.last_number
        return False, 1, reader.frame_count
    finally:
        reader.close()


def check_model(model: str) -> str:
    from hdrlift.engine.models import get_info

    info = get_info(model)  # ModelError: unknown
    if info.kind == "fusion" or not info.runnable:
        raise FarmError(f"model {model!r} cannot convert a video frame by frame here "
                        f"({'it merges exposure brackets' if info.kind == 'fusion' else 'no weights'})")
    return model


def video_models() -> list[str]:
    """The models a farm job may ask for: runnable single-frame models, by name."""
    from hdrlift.engine.models import available

    return sorted(i.name for i in available() if i.runnable and i.kind != "fusion")


def plan(input: str | os.PathLike, output: str | os.PathLike, *, frames: str | None = None,  # noqa: A002
         chunk: int = 10, model: str | None = None, output_colorspace: str | None = None,
         device: str = "cpu", backend: str = "auto", server: str = SESSION,
         session_allowed: bool = True, keep_existing: bool = False) -> Conversion:
    """Check a conversion and return it; `FarmError` (or the engine's `InputError`/`ModelError`)
    with a one-line message when it cannot run.

    Frames already in the output folder are refused unless ``keep_existing``: the tasks run with
    --resume and would keep them, whatever model or input made them."""
    from hdrlift.engine.colour import DEFAULT_OUTPUT_SPACE
    from hdrlift.engine.models import DEFAULT_MODEL

    if not isinstance(chunk, int) or chunk < 1:
        raise FarmError(f"--chunk must be a positive number of frames, got {chunk!r}")
    wanted = parse_frames(frames) if frames is not None else None
    server = check_server(server, session_allowed=session_allowed)
    model = check_model(model or DEFAULT_MODEL)
    if backend not in ("auto", "torch", "onnxruntime", "tensorrt"):
        raise FarmError(f"--backend must be auto, torch, onnxruntime or tensorrt, got {backend!r}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):  # what both hdr-video and hdrlift-serve take
        raise FarmError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
    in_path = pathlib.Path(os.path.abspath(os.fspath(input)))
    out_dir, out_name = split_output(output, in_path)
    is_seq, first, last = _probe(in_path)
    if wanted is not None:
        if wanted[0] < first or wanted[1] > last:
            raise FarmError(f"frames {wanted[0]}-{wanted[1]} are outside the input's frames {first}-{last}")
        first, last = wanted
    existing = [] if keep_existing else _existing_frames(out_dir, out_name, first, last)
    if existing:
        raise FarmError(f"{len(existing)} of frames {first}-{last} already exist in {out_dir} (e.g. {existing[0]}); "
                        "the tasks run with --resume and would keep them: remove them, choose another output, "
                        "or pass --keep-existing to complete an earlier run")
    return Conversion(input=in_path, input_is_sequence=is_seq, output_dir=out_dir, output_name=out_name,
                      first=first, last=last, chunk=chunk, model=model,
                      output_colorspace=output_colorspace or DEFAULT_OUTPUT_SPACE, device=device,
                      backend=backend, server=server)
