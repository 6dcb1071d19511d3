"""OpenCue jobs for one conversion, built with pyoutline (PyPI ``opencue-pyoutline``).

One outline, one Shell layer per chunk: layer ``frames_A_B`` has the frame range ``A-B`` and a
chunk size of its whole range, so Cuebot dispatches it as one frame that runs
``hdr-video INPUT OUTPUT --frames A-B --resume``. The job is serialised by pyoutline's own
serialiser (``OutlineLauncher.serialize(use_pycuerun=False)``: the commands run as they are,
without the pycuerun wrapper) into the OpenCue job spec XML that Cuebot takes
(``opencue.api.launchSpec``).

OpenCue has no worker sessions, so there is no per-session server here: tasks load the model
themselves (``--server none``) or send frames to running hdrlift-serve servers.
Paths must be valid on the render nodes as written (shared storage): OpenCue moves no files.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from typing import Iterator

from hdrlift.engine.farm.spec import NONE, Conversion, FarmError


def _import_outline():
    try:
        import outline
        import outline.cuerun
        import outline.modules.shell
    except ImportError as exc:
        raise FarmError(f"OpenCue jobs need opencue-pyoutline (pip install 'hdrlift[farm]'): {exc}") from None
    return outline


def chunk_command(conv: Conversion, first: int, last: int, hdr_video: str = "hdr-video") -> str:
    """The shell command of one chunk (RQD runs layer commands through a shell)."""
    server = None if conv.server == NONE else conv.server
    return shlex.join([hdr_video, *conv.hdr_video_args(f"{first}-{last}", server)])


def build_outline(conv: Conversion, *, name: str | None = None, show: str | None = None,
                  shot: str | None = None, user: str | None = None, service: str | None = None,
                  tags: str | None = None, cores: float | None = None, memory: str | None = None,
                  gpus: int | None = None, hdr_video: str = "hdr-video"):
    """The pyoutline ``Outline``: one Shell layer per chunk of ``conv``."""
    outline = _import_outline()
    from outline.modules.shell import Shell

    ol = outline.Outline(name or f"hdrlift_{conv.input.stem}", frame_range=f"{conv.first}-{conv.last}",
                         show=show, shot=shot, user=user)
    for first, last in conv.chunks():
        layer_args: dict = {"command": chunk_command(conv, first, last, hdr_video),
                            "range": f"{first}-{last}", "chunk": last - first + 1}
        if service:
            layer_args["service"] = service
        if tags:
            layer_args["tags"] = tags
        if cores:
            layer_args["cores"] = cores
        if memory:
            layer_args["memory"] = memory
        if gpus:
            layer_args["gpus"] = gpus
        ol.add_layer(Shell(f"frames_{first:04d}_{last:04d}", **layer_args))
    return ol


@contextlib.contextmanager
def _private_session_dir() -> Iterator[None]:
    """pyoutline writes a session folder (a YAML copy of the outline) when it sets a job up. With
    use_pycuerun=False the frames never read it, so it goes to a temporary folder, removed after."""
    import outline

    old = outline.config.get("outline", "session_dir")
    tmp = tempfile.mkdtemp(prefix="hdrlift-outline-")
    outline.config.set("outline", "session_dir", tmp)
    try:
        yield
    finally:
        outline.config.set("outline", "session_dir", old)
        shutil.rmtree(tmp, ignore_errors=True)


def serialize(ol, *, pause: bool = False, priority: int = 1, facility: str | None = None,
              maxretries: int | None = None) -> str:
    """The OpenCue job spec (XML) of ``ol``, from pyoutline's serialiser."""
    outline = _import_outline()
    flags: dict = {"pause": pause, "priority": priority, "nomail": True}
    if facility:
        flags["facility"] = facility
    if maxretries is not None:
        flags["maxretries"] = maxretries
    launcher = outline.cuerun.OutlineLauncher(ol, **flags)
    with _private_session_dir():
        return launcher.serialize(use_pycuerun=False)


def launch(spec: str, cuebot: str | None = None):
    """Submit a serialised spec to Cuebot (``opencue.api.launchSpecAndWait``); returns the jobs.
    Not run in hdrlift's tests: Cuebot needs Java and PostgreSQL."""
    import opencue

    if cuebot:
        opencue.Cuebot.setHosts([cuebot])
    return opencue.api.launchSpecAndWait(spec)


def write_spec(spec: str, path: str | os.PathLike) -> None:
    from hdrlift.engine.atomic import atomic_write_text

    atomic_write_text(path, spec if spec.endswith("\n") else spec + "\n")
