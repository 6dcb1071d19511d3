"""One run of the HdrLift node, without Nuke: render, hash, skip, stream, write.

:func:`run` gets the node's :class:`Settings`, the frames, and callbacks for what only the host can
do: ``render(path, frame)`` (Nuke: the gizmo's internal Write renders the input to that EXR),
``progress(percent, message)`` and ``cancelled()``. For each frame it renders the input, turns
Nuke's scene-linear pixels into the plate's code values (:func:`hdrlift_nuke.colour.to_plate`) and
hashes them; a frame whose result file already holds that hash and these settings is skipped.
The others go through one ``ReconstructStream`` (``Client.reconstruct_frames``: ordered, chunked,
resent elsewhere if a server goes away), and each result is written as soon as it arrives.

The cache: ``<cache folder>/<node>-<key>/hdr.####.exr``, ``key`` a hash of the script, the node
and the settings that change the pixels (model and its version, colour spaces, transfer, half
floats); each file records the hash of the input frame it was made from
(``hdrlift:input_hash``). Changing a setting starts a new folder; changing the input re-sends
only the frames that changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from typing import Callable, Iterable

import numpy as np

from hdrlift_nuke import __version__, colour, exrfiles

RESULT_NAME = "hdr.{frame:04d}.exr"
RESULT_PATTERN = "hdr.####.exr"  # the same, as Nuke's Read names a sequence
INPUT_NAME = "in.{frame:04d}.exr"
KEY_VERSION = "1"  # bump when the cache key or the files change meaning
_RESULT_RE = re.compile(r"^hdr\.(-?\d+)\.exr$")


class NodeError(Exception):
    """What the node shows the user: one line."""

    def __str__(self) -> str:
        return " ".join(str(self.args[0] if self.args else "").split())


@dataclasses.dataclass(frozen=True)
class Settings:
    """The HdrLift node's knobs (see the gizmo)."""

    servers: str
    model: str = ""  # empty: the server's default
    token_file: str = ""  # empty: $HDRLIFT_TOKEN, else none
    ca_file: str = ""  # set: TLS with this authority
    input_transfer: str = "sRGB"
    working_space: str = "linear Rec.709"
    output_space: str = "working space"
    half: bool = True
    cache_folder: str = ""  # empty: default_cache_root()
    timeout: float = 30.0  # seconds for the first call (connection, token, model check)

    def check(self) -> None:
        if not self.servers.strip():
            raise NodeError("servers is empty: give host:port (several comma-separated)")
        try:
            colour.transfer(self.input_transfer)
            colour.output_space(self.output_space, self.working_space)
        except colour.ColourSettingError as exc:
            raise NodeError(str(exc)) from None

    @property
    def server_output_space(self) -> str:
        return colour.output_space(self.output_space, self.working_space)

    @property
    def server_input_space(self) -> str:
        return colour.transfer(self.input_transfer)[1]


@dataclasses.dataclass
class Report:
    folder: str
    pattern: str  # the results as a Nuke sequence path (####)
    frames: int = 0
    written: int = 0
    skipped: int = 0
    cancelled: bool = False
    model: str = ""
    seconds: float = 0.0
    first: int | None = None  # the frames present in the folder after the run
    last: int | None = None

    def summary(self) -> str:
        what = f"{self.written} written, {self.skipped} unchanged"
        if self.cancelled:
            what += f", cancelled after {self.written + self.skipped} of {self.frames}"
        return f"{what} ({self.model}, {self.seconds:.1f} s)"


def default_cache_root(env: dict | None = None) -> str:
    """``$NUKE_TEMP_DIR/hdrlift``, else the system's temporary folder ``/hdrlift``."""
    env = os.environ if env is None else env
    return os.path.join(env.get("NUKE_TEMP_DIR") or tempfile.gettempdir(), "hdrlift")


def _client(settings: Settings):
    from hdrlift.plugin import Client, read_token_file

    token = read_token_file(settings.token_file) if settings.token_file else None
    return Client(settings.servers, token=token, ca_file=settings.ca_file or None, timeout=None)


def _error(exc: BaseException) -> NodeError:
    from hdrlift.plugin.errors import HdrliftError

    if isinstance(exc, NodeError):
        return exc
    if isinstance(exc, (HdrliftError, exrfiles.ExrError, colour.ColourSettingError)):
        return NodeError(str(exc))
    if isinstance(exc, OSError):
        return NodeError(f"{getattr(exc, 'filename', '') or ''} {exc.strerror or exc}".strip())
    return NodeError(f"internal error: {type(exc).__name__}: {exc}")


def list_models(settings: Settings) -> tuple[list[str], str]:
    """(the server's runnable single-image models, its default model)."""
    try:
        with _client(settings) as client:
            reply = client.list_models(timeout=settings.timeout)
    except Exception as exc:  # noqa: BLE001 - one line for the node
        raise _error(exc) from None
    names = sorted(m.name for m in reply.models if m.runnable and m.kind != "fusion")
    return names, reply.default_model


def settings_key(settings: Settings, model: str, model_version: str) -> dict:
    """What decides a result's pixels besides the input frame."""
    return {"model": model, "model_version": model_version, "input_space": settings.server_input_space,
            "input_transfer": settings.input_transfer, "working_space": settings.working_space,
            "output_space": settings.server_output_space, "half": bool(settings.half), "mask": True,
            "key_version": KEY_VERSION}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def results_folder(settings: Settings, key: dict, *, scope: str, node_name: str) -> str:
    """``<cache folder>/<node name>-<16 hex digits of (scope, node, settings)>``."""
    root = settings.cache_folder or default_cache_root()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("._") or "HdrLift"
    return os.path.join(root, f"{safe}-{_digest([scope, node_name, key])[:16]}")


def frame_hash(code: np.ndarray, input_space: str) -> str:
    h = hashlib.sha256()
    h.update(f"{code.shape}|{code.dtype}|{input_space}|".encode())
    h.update(np.ascontiguousarray(code).tobytes())
    return h.hexdigest()[:32]


def result_range(folder: str) -> tuple[int | None, int | None]:
    """First and last frame number of the results in ``folder`` (None, None if there are none)."""
    try:
        frames = [int(m.group(1)) for m in map(_RESULT_RE.match, os.listdir(folder)) if m]
    except OSError:
        return None, None
    return (min(frames), max(frames)) if frames else (None, None)


def _unchanged(path: str, digest: str, key_digest: str) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        attrs = exrfiles.read_attributes(path)
    except exrfiles.ExrError:
        return False
    return attrs.get("hdrlift:input_hash") == digest and attrs.get("hdrlift:settings") == key_digest


def run(settings: Settings, frames: Iterable[int], *, scope: str, node_name: str,
        render: Callable[[str, int], None], progress: Callable[[int, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None, window: int = 4) -> Report:
    """Reconstruct ``frames`` (see the module docstring). Every failure is a :class:`NodeError`;
    results written before it stay (each file is whole)."""
    try:
        return _run(settings, list(frames), scope=scope, node_name=node_name, render=render,
                    progress=progress or (lambda p, m: None), cancelled=cancelled or (lambda: False), window=window)
    except Exception as exc:  # noqa: BLE001 - one line for the node
        raise _error(exc) from None


def _run(settings, frames, *, scope, node_name, render, progress, cancelled, window) -> Report:
    settings.check()
    if not frames:
        raise NodeError("no frames to reconstruct (check the frame range)")
    started = time.monotonic()
    in_space, out_space = settings.server_input_space, settings.server_output_space
    with _client(settings) as client:
        progress(0, f"asking {settings.servers} for model {settings.model or '(default)'}")
        model, _ = client.runnable_model(settings.model or None, timeout=settings.timeout)
        reply = client.list_models(timeout=settings.timeout)
        version = next((m.version for m in reply.models if m.name == model), "")
        key = settings_key(settings, model, version)
        key_digest = _digest(key)[:32]
        folder = results_folder(settings, key, scope=scope, node_name=node_name)
        report = Report(folder=folder, pattern=os.path.join(folder, RESULT_PATTERN).replace(os.sep, "/"),
                        frames=len(frames), model=model)
        scratch = os.path.join(folder, ".input")
        os.makedirs(scratch, exist_ok=True)
        total = len(frames) * 5  # 1 unit to render and hash a frame, 4 to reconstruct it
        done = 0
        todo: list[tuple[int, str, str]] = []
        rendered: list[str] = []
        try:
            for f in frames:
                if cancelled():
                    report.cancelled = True
                    break
                progress(100 * done // total, f"rendering the input, frame {f}")
                path = os.path.join(scratch, INPUT_NAME.format(frame=f))
                render(path, f)
                rendered.append(path)
                code, _ = colour.to_plate(exrfiles.read_rgb(path), settings.working_space, settings.input_transfer)
                digest = frame_hash(code, in_space)
                if _unchanged(os.path.join(folder, RESULT_NAME.format(frame=f)), digest, key_digest):
                    report.skipped += 1
                    done += 5
                else:
                    todo.append((f, path, digest))
                    done += 1
            if todo and not report.cancelled:
                def plates():  # read again here (in gRPC's sending thread): one frame in memory at a time
                    for _, p, _ in todo:
                        yield colour.to_plate(exrfiles.read_rgb(p), settings.working_space, settings.input_transfer)[0]

                results = client.reconstruct_frames(plates(), model=model, input_space=in_space,
                                                    output_space=out_space, mask=True, window=window)
                try:
                    progress(100 * done // total, f"reconstructing {len(todo)} frames on {settings.servers}")
                    for (f, _, digest), res in zip(todo, results):
                        attrs = {"hdrlift:input_hash": digest, "hdrlift:settings": key_digest, "hdrlift:model": model,
                                 "hdrlift:model_version": version, "hdrlift:colorspace": out_space,
                                 "hdrlift:input_colorspace": in_space, "hdrlift:input_transfer": settings.input_transfer,
                                 "hdrlift:server": settings.servers, "hdrlift:source_frame": int(f),
                                 "hdrlift:version": f"hdrlift-nuke {__version__}"}
                        exrfiles.write_result(os.path.join(folder, RESULT_NAME.format(frame=f)), res.hdr, res.mask,
                                              half=settings.half, attributes=attrs)
                        report.written += 1
                        done += 4
                        progress(100 * done // total, f"frame {f} written")
                        if cancelled():
                            report.cancelled = report.written < len(todo)
                            break
                finally:
                    results.close()  # ends the stream (cancels what the server has not answered)
        finally:
            for p in rendered:
                try:
                    os.unlink(p)
                except OSError:
                    pass
            try:
                os.rmdir(scratch)
            except OSError:
                pass
    report.first, report.last = result_range(folder)
    report.seconds = time.monotonic() - started
    progress(100, report.summary())
    return report
