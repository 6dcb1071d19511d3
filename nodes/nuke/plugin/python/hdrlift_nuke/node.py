"""The thin layer that calls Nuke: the HdrLift gizmo's buttons, its menu entry, its internal Write
and Read, progress and cancel. The work itself is :func:`hdrlift_nuke.job.run`.

In the GUI a run goes to a Python thread (Nuke's UI stays alive, ``nuke.ProgressTask`` shows
progress and its Cancel button); everything that touches the node graph (knobs, ``nuke.execute``)
is sent back to the main thread with ``nuke.executeInMainThreadWithResult``. Under ``nuke -t`` the
run happens in the calling thread and :func:`reconstruct` returns the report or raises
:class:`hdrlift_nuke.job.NodeError`.
"""

from __future__ import annotations

import os
import threading

import nuke

from hdrlift_nuke import job

GIZMO = "HdrLift"
WRITE = "HdrLiftInput"  # renders the input to the temporary EXRs the node sends
READ = "HdrLiftResult"  # shows the results (the node's output)
ICON = "hdrlift.png"
DEFAULT_MODEL_ITEM = "(server default)"

_running: set[str] = set()  # nodes with a run in progress (one run per node at a time)
_running_lock = threading.Lock()


# --------------------------------------------------------------------------- menus (menu.py)
def add_menus() -> None:
    """The Nodes toolbar: an hdrlift icon whose menu creates the HdrLift node."""
    menu = nuke.menu("Nodes").addMenu("hdrlift", icon=ICON)
    menu.addCommand(GIZMO, f"nuke.createNode('{GIZMO}')", icon=ICON)


# --------------------------------------------------------------------------- knobs
def settings(node) -> job.Settings:
    """The node's knobs as :class:`hdrlift_nuke.job.Settings`."""
    def text(name: str) -> str:
        return str(node[name].value() or "").strip()

    def path(name: str) -> str:
        return str(node[name].evaluate() or "").strip()

    return job.Settings(servers=text("servers"), model=text("model"), token_file=path("token_file"),
                        ca_file=path("ca_file"), input_transfer=text("input_transfer"),
                        working_space=text("working_space"), output_space=text("output_space"),
                        half=bool(node["half"].value()), cache_folder=path("cache_folder"))


def frame_range(node) -> tuple[int, int]:
    if node["input_range"].value():
        source = node.input(0)
        if source is None:
            raise job.NodeError(f"{node.name()} has no input: connect the plate")
        first, last = int(source.firstFrame()), int(source.lastFrame())
    else:
        first, last = int(node["first_frame"].value()), int(node["last_frame"].value())
    if last < first:
        raise job.NodeError(f"the frame range {first}-{last} is empty")
    return first, last


def knob_changed() -> None:
    """The gizmo's knobChanged: picking a model in the list fills the model knob."""
    knob = nuke.thisKnob()
    if knob is None or knob.name() != "models":
        return
    pick = str(knob.value() or "")
    nuke.thisNode()["model"].setValue("" if pick.startswith(DEFAULT_MODEL_ITEM) else pick)


def refresh_models(node=None) -> list[str]:
    """Fill the model list from the server's ListModels."""
    node = node or nuke.thisNode()
    try:
        names, default = job.list_models(settings(node))
    except job.NodeError as exc:
        _failed(node, str(exc))
        return []
    node["models"].setValues([f"{DEFAULT_MODEL_ITEM}: {default}"] + names)
    node["status"].setValue(f"{len(names)} models on {settings(node).servers}")
    return names


# --------------------------------------------------------------------------- runs
def reconstruct(node=None, frames: list[int] | None = None):
    """The "Reconstruct" button: the frame range (or ``frames``). GUI: starts the run in a thread
    and returns it. ``nuke -t``: runs now, returns the report, raises NodeError on failure."""
    node = node or nuke.thisNode()
    try:
        if frames is None:
            first, last = frame_range(node)
            frames = list(range(first, last + 1))
        s = settings(node)
        s.check()
        write = node.node(WRITE)
        if write is None:
            raise job.NodeError(f"{node.name()} has no internal Write {WRITE}; recreate the node")
        name = node.fullName()
        with _running_lock:
            if name in _running:
                raise job.NodeError(f"{name} is already reconstructing; wait for it or cancel it")
            _running.add(name)
    except job.NodeError as exc:
        _failed(node, str(exc))
        if not nuke.GUI:
            raise
        return None
    node["status"].setValue(f"running: {len(frames)} frames")
    args = (node, write, s, list(frames), nuke.root().name(), name)
    if nuke.GUI:
        worker = threading.Thread(target=_work, args=args, name=f"hdrlift {name}", daemon=True)
        try:
            worker.start()
        except BaseException:
            _running.discard(name)
            raise
        return worker
    return _work(*args)


def reconstruct_frame(node=None):
    """The "Reconstruct this frame" button: the viewer's current frame."""
    return reconstruct(node or nuke.thisNode(), [int(nuke.frame())])


def _main(call, *args):
    """Run ``call`` on Nuke's main thread (directly when this is it or there is no GUI)."""
    if not nuke.GUI or threading.current_thread() is threading.main_thread():
        return call(*args)
    return nuke.executeInMainThreadWithResult(call, args)


def _render(write, path: str, frame: int) -> str:
    """Main thread: render ``frame`` of the input through the internal Write to ``path``.
    Returns an error message, or "" (an exception would not cross back to the worker thread)."""
    try:
        write["file"].setValue(path.replace(os.sep, "/"))
        write["disable"].setValue(False)
        try:
            nuke.execute(write, frame, frame)
        finally:
            write["disable"].setValue(True)
    except Exception as exc:  # noqa: BLE001 - reported on the node
        return f"rendering frame {frame} of the input failed: {exc}"
    return ""


def _work(node, write, s: job.Settings, frames: list[int], scope: str, name: str):
    task = nuke.ProgressTask(f"HdrLift {name}")

    def render(path: str, frame: int) -> None:
        failure = _main(_render, write, path, frame)
        if failure:
            raise job.NodeError(failure)

    def progress(percent: int, message: str) -> None:
        task.setProgress(int(percent))
        task.setMessage(message)

    try:
        report = job.run(s, frames, scope=scope, node_name=name, render=render, progress=progress,
                         cancelled=task.isCancelled)
    except job.NodeError as exc:
        _main(_failed, node, str(exc))
        if not nuke.GUI:
            raise
        return None
    finally:
        del task  # closes Nuke's progress bar
        with _running_lock:
            _running.discard(name)
    _main(_finish, node, report)
    return report


def _finish(node, report: job.Report) -> None:
    """Main thread: point the internal Read at the results and show what happened."""
    node["results"].setValue(report.pattern)
    if report.first is not None:
        node["results_first"].setValue(report.first)
        node["results_last"].setValue(report.last)
    node["status"].setValue(report.summary())
    read = node.node(READ)
    if read is not None:
        read["reload"].execute()


def _failed(node, message: str) -> None:
    node["status"].setValue(f"error: {message}")
    if nuke.GUI:
        nuke.message(f"HdrLift: {message}")
    else:
        nuke.tprint(f"HdrLift {node.name()}: error: {message}")
