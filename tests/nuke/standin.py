"""A stand-in ``nuke`` module for the tests, held to the published API: the ``types-nuke`` stubs
from PyPI (the PyPI package called ``nuke`` is unrelated and never installed).

Every module function, class and method the code under test reaches must exist in the stubs, and
every call must bind to the stub's signature (wrong names or keywords raise ``StubError`` or
``TypeError``, so a misspelt Nuke call fails the test). Behind that check a small model of Nuke
does what the HdrLift node needs: gizmos built from their ``.gizmo`` text (user knobs by type,
internal nodes, the node stack), knobs, ``nuke.execute`` of a Write (it writes the EXR Nuke
would, after checking the knobs), a Read whose file is a ``[value parent.x]`` expression,
``ProgressTask``, menus, ``pluginAddPath``, the main thread (``executeInMainThreadWithResult``
queues calls that the test's thread runs with :meth:`Nuke.pump`). Each call is recorded in
``Nuke.calls`` as ``(name, args, kwargs, thread name)``.

Knob names and values of Nuke's own nodes (Write, Read) are not in the stubs; the tables below
come from Nuke's node reference as remembered, not verified here (docs/nuke.md says so).
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import pathlib
import queue
import re
import threading
import types

import nkscript

STUB_FILES = ("_nuke.pyi", "utils.pyi", "callbacks.pyi", "colorspaces.pyi", "executeInMain.pyi", "overrides.pyi",
              "scripts.pyi")


class StubError(AttributeError):
    """A name the types-nuke stubs do not have."""


# --------------------------------------------------------------------------- the stubs
def stubs_folder() -> pathlib.Path | None:
    try:
        dist = importlib.metadata.distribution("types-nuke")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = pathlib.Path(dist.locate_file("nuke-stubs"))
    return folder if (folder / "_nuke.pyi").is_file() else None


def _signature(fn: ast.FunctionDef, method: bool) -> inspect.Signature:
    a = fn.args
    params = []
    positional = list(a.posonlyargs) + list(a.args)
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        if method and i == 0:
            continue
        kind = (inspect.Parameter.POSITIONAL_ONLY if arg in a.posonlyargs else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params.append(inspect.Parameter(arg.arg, kind, default=inspect.Parameter.empty if default is None else None))
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY,
                                        default=inspect.Parameter.empty if default is None else None))
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


class Stubs:
    """Module functions, classes (bases, methods) and constants of the stub files."""

    def __init__(self, folder: pathlib.Path):
        self.functions: dict[str, list[inspect.Signature]] = {}
        self.classes: dict[str, tuple[list[str], dict[str, list[inspect.Signature]]]] = {}
        self.constants: set[str] = set()
        for name in STUB_FILES:
            tree = ast.parse((folder / name).read_text())
            for item in tree.body:
                if isinstance(item, ast.FunctionDef):
                    self.functions.setdefault(item.name, []).append(_signature(item, method=False))
                elif isinstance(item, ast.ClassDef):
                    bases = [b.id for b in item.bases if isinstance(b, ast.Name)]
                    methods: dict[str, list[inspect.Signature]] = {}
                    for m in item.body:
                        if isinstance(m, ast.FunctionDef):
                            methods.setdefault(m.name, []).append(_signature(m, method=True))
                    self.classes[item.name] = (bases, methods)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    self.constants.add(item.target.id)

    def method(self, cls: str, name: str) -> list[inspect.Signature] | None:
        seen = [cls]
        while seen:
            c = seen.pop(0)
            if c not in self.classes:
                continue
            bases, methods = self.classes[c]
            if name in methods:
                return methods[name]
            seen.extend(bases)
        return None


def _bind(where: str, sigs: list[inspect.Signature], args, kwargs) -> None:
    errors = []
    for s in sigs:
        try:
            s.bind(*args, **kwargs)
            return
        except TypeError as exc:
            errors.append(str(exc))
    raise TypeError(f"{where}{sigs[0]}: {errors[0]}")


# --------------------------------------------------------------------------- objects
class Checked:
    """Public attributes must be stub methods of ``STUB`` (or its bases); calls bind to them."""

    STUB = "Node"
    _nuke: "Nuke"

    def __getattribute__(self, name: str):
        if name.startswith("_") or name in ("STUB",):
            return object.__getattribute__(self, name)
        nk = object.__getattribute__(self, "_nuke")
        stub = object.__getattribute__(self, "STUB")
        sigs = nk.stubs.method(stub, name)
        if sigs is None:
            raise StubError(f"nuke.{stub} has no method {name!r} in types-nuke")
        try:
            impl = object.__getattribute__(self, name)
        except AttributeError:
            raise NotImplementedError(f"the stand-in does not implement nuke.{stub}.{name}") from None

        def call(*args, **kwargs):
            _bind(f"nuke.{stub}.{name}", sigs, args, kwargs)
            nk._record(f"{stub}.{name}", args, kwargs, owner=self)
            return impl(*args, **kwargs)

        return call


class Knob(Checked):
    STUB = "Knob"

    def __init__(self, nk, node, name, stub, value=None, items=None, script=None):
        self._nuke, self._node, self._name, self.STUB = nk, node, name, stub
        self._value, self._items, self._script = value, items, script
        self._expression = None

    # Knob
    def name(self):
        return self._name

    def value(self, *args):
        if self._expression is not None:
            return self._evaluate_expression()
        if self.STUB == "Enumeration_Knob":
            return self._items[self._value or 0] if self._items else ""
        return self._value

    def getValue(self, *args):
        return self.value()

    def setValue(self, val, *args):
        self._nuke._main_thread_only(f"{self.STUB}.setValue")
        if self.STUB == "Enumeration_Knob":
            if isinstance(val, str):
                if val not in self._items:
                    raise ValueError(f"{val!r} is not an item of {self._name} {self._items}")
                val = self._items.index(val)
            self._value = int(val)
        elif self.STUB == "Int_Knob":
            self._value = int(val)
        elif self.STUB == "Boolean_Knob":
            self._value = bool(val)
        else:
            if not isinstance(val, str):
                raise TypeError(f"{self.STUB}.setValue takes text, got {type(val).__name__}")
            self._value = val
        self._expression = None
        return True

    def setValues(self, items):
        self._nuke._main_thread_only("Enumeration_Knob.setValues")
        if not all(isinstance(i, str) for i in items):
            raise TypeError("setValues takes a list of strings")
        current = self.value()
        self._items = list(items)
        self._value = self._items.index(current) if current in self._items else 0

    def values(self):
        return list(self._items or [])

    def evaluate(self, *args):
        return self._nuke._tcl(str(self._value or ""), self._node)

    def execute(self):
        self._nuke._record(f"{self._node._name}.{self._name} executed", (), {})
        if self._script:
            self._nuke.press(self._node, self._name)

    def setExpression(self, expression, *args):
        self._expression = expression
        return True

    def _evaluate_expression(self):
        m = re.fullmatch(r"parent\.(\w+)", self._expression.strip())
        if not m or self._node._parent is None:
            raise ValueError(f"the stand-in evaluates parent.<knob> expressions only, not {self._expression!r}")
        return self._node._parent._knobs[m.group(1)].value()


#: user knob type number (addUserKnob) -> knob class
USER_KNOB_TYPES = {1: "String_Knob", 2: "File_Knob", 3: "Int_Knob", 4: "Enumeration_Knob", 6: "Boolean_Knob",
                   20: "Tab_Knob", 22: "PyScript_Knob", 26: "Text_Knob"}

#: Nuke's own nodes: knob -> (class, allowed values or None). From Nuke's node reference (remembered).
NODE_KNOBS = {
    "Input": {"inputs": ("Int_Knob", None), "number": ("Int_Knob", None)},
    "Output": {"inputs": ("Int_Knob", None)},
    "Write": {"file": ("File_Knob", None), "file_type": ("Enumeration_Knob", ["", "exr", "tiff", "png", "dpx", "jpeg"]),
              "datatype": ("Enumeration_Knob", ["16 bit half", "32 bit float"]),
              "compression": ("Enumeration_Knob", ["none", "Zip (1 scanline)", "Zip (16 scanlines)",
                                                   "PIZ Wavelet (32 scanlines)", "RLE", "B44", "B44A", "DWAA", "DWAB"]),
              "channels": ("Channel_Knob", ["rgb", "rgba", "alpha", "all"]), "raw": ("Boolean_Knob", None),
              "colorspace": ("Enumeration_Knob", None), "views": ("OneView_Knob", None), "inputs": ("Int_Knob", None)},
    "Read": {"file": ("File_Knob", None), "first": ("Int_Knob", None), "last": ("Int_Knob", None),
             "origfirst": ("Int_Knob", None), "origlast": ("Int_Knob", None), "raw": ("Boolean_Knob", None),
             "on_error": ("Enumeration_Knob", ["error", "black", "checkerboard", "nearest frame"]),
             "reload": ("Script_Knob", None), "colorspace": ("Enumeration_Knob", None), "inputs": ("Int_Knob", None)},
}
COMMON_KNOBS = {"name": ("String_Knob", None), "xpos": ("Int_Knob", None), "ypos": ("Int_Knob", None),
                "disable": ("Boolean_Knob", None), "label": ("String_Knob", None)}
# the Write's EXR compressions the plugin's codec reads, as OpenEXR numbers
READABLE_COMPRESSION = {"none": 0, "Zip (1 scanline)": 2, "Zip (16 scanlines)": 3}


class Node(Checked):
    STUB = "Node"

    def __init__(self, nk, cls, name, parent=None, stub="Node"):
        self._nuke, self._cls, self._name, self._parent, self.STUB = nk, cls, name, parent, stub
        self._knobs: dict[str, Knob] = {}
        self._inputs: list = []
        self._children: list[Node] = []
        self._frames = (1, 1)
        self._pixels = None  # a plate: frame -> H x W x 3 linear float32 (or (array, data window))

    def __getitem__(self, name):
        if name not in self._knobs:
            raise NameError(f"{self._name} has no knob {name!r}")  # Nuke raises NameError too
        return self._knobs[name]

    def Class(self):
        return self._cls

    def name(self):
        return self._name

    def fullName(self):
        return self._name if self._parent is None or self._parent._cls == "Root" else f"{self._parent.fullName()}.{self._name}"

    def knobs(self):
        return dict(self._knobs)

    def knob(self, p, *args):
        return self._knobs.get(p)

    def input(self, index):
        return self._inputs[index] if index < len(self._inputs) else None

    def inputs(self):
        return len(self._inputs)

    def setInput(self, i, node):
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        return True

    def firstFrame(self):
        if self._pixels is None and self._inputs and self._inputs[0] is not None:
            return self._inputs[0].firstFrame()
        return self._frames[0]

    def lastFrame(self):
        if self._pixels is None and self._inputs and self._inputs[0] is not None:
            return self._inputs[0].lastFrame()
        return self._frames[1]

    # Group
    def node(self, s):
        return next((c for c in self._children if c._name == s), None)

    def nodes(self):
        return list(self._children)

    def begin(self):
        return self

    def end(self):
        return None


class ProgressTask(Checked):
    STUB = "ProgressTask"

    def __init__(self, nk, title):
        self._nuke, self._title = nk, title
        self._progress: list[int] = []
        self._messages: list[str] = []
        self._cancel_after: str | None = None
        self._cancelled = False
        nk.tasks.append(self)

    def setProgress(self, value):
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise ValueError(f"setProgress takes 0-100, got {value!r}")
        self._progress.append(value)

    def setMessage(self, message):
        if not isinstance(message, str):
            raise TypeError("setMessage takes text")
        self._messages.append(message)
        if self._nuke.cancel_when and self._nuke.cancel_when in message:
            self._cancelled = True

    def isCancelled(self):
        return self._cancelled


class Menu(Checked):
    STUB = "Menu"

    def __init__(self, nk, name):
        self._nuke, self._name = nk, name
        self._items: dict[str, object] = {}
        self._icon = None

    def addMenu(self, name, icon=None, **kw):
        m = self._items.get(name) or Menu(self._nuke, name)
        m._icon = icon
        self._items[name] = m
        return m

    def addCommand(self, name, command=None, shortcut=None, icon=None, **kw):
        if not isinstance(command, str):
            raise TypeError("the stand-in takes menu commands as Python text")
        self._items[name] = {"command": command, "icon": icon}
        return None

    def findItem(self, name):
        return self._items.get(name)

    def name(self):
        return self._name


# --------------------------------------------------------------------------- the module
class Nuke:
    """The stand-in: :attr:`module` is what ``import nuke`` gets."""

    def __init__(self, stubs: Stubs, *, gui: bool = False, script_name: str = "/shows/demo/comp_v001.nk"):
        self.stubs = stubs
        self.calls: list[tuple] = []
        self.tasks: list[ProgressTask] = []
        self.plugin_paths: list[str] = []
        self.menus: dict[str, Menu] = {}
        self.messages: list[str] = []
        self.printed: list[str] = []
        self.current_frame = 1
        self.cancel_when: str | None = None
        self.main_thread = threading.main_thread()
        self.main_queue: queue.Queue = queue.Queue()
        self.this_node = None
        self.this_knob = None
        self.plugin_dir = None  # the folder whose init.py / menu.py runs (relative pluginAddPath)
        self.root = Node(self, "Root", script_name, stub="Root")
        self.root._frames = (1, 100)
        self.module = types.ModuleType("nuke")
        self.module.__getattr__ = self._module_attr
        self.module.GUI = gui
        self.module.INVISIBLE = 1024
        self.module.STARTLINE = 4096

    # -- recording and checks
    def _record(self, name, args, kwargs, owner=None):
        self.calls.append((name, args, kwargs, threading.current_thread().name))

    def _main_thread_only(self, what: str) -> None:
        if self.module.GUI and threading.current_thread() is not self.main_thread:
            raise RuntimeError(f"{what} called from thread {threading.current_thread().name}: Nuke's graph "
                               "may only be touched from the main thread")

    def called(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]

    def _module_attr(self, name: str):
        if name in self.stubs.functions:
            impl = getattr(self, f"fn_{name}", None)
            sigs = self.stubs.functions[name]

            def call(*args, **kwargs):
                _bind(f"nuke.{name}", sigs, args, kwargs)
                self._record(name, args, kwargs)
                if impl is None:
                    raise NotImplementedError(f"the stand-in does not implement nuke.{name}")
                return impl(*args, **kwargs)

            return call
        if name in self.stubs.classes:
            impl = getattr(self, f"cls_{name}", None)
            if impl is None:
                raise NotImplementedError(f"the stand-in does not implement class nuke.{name}")
            return impl
        if name in self.stubs.constants:
            raise NotImplementedError(f"the stand-in has no value for nuke.{name}")
        raise StubError(f"module 'nuke' has no attribute {name!r} in types-nuke")

    # -- module functions
    def fn_pluginAddPath(self, args, addToSysPath=True):
        path = args if os.path.isabs(args) else os.path.normpath(os.path.join(self.plugin_dir or os.getcwd(), args))
        self.plugin_paths.insert(0, path)
        if addToSysPath and path not in __import__("sys").path:
            __import__("sys").path.insert(0, path)

    def fn_pluginPath(self):
        return list(self.plugin_paths)

    def fn_menu(self, name):
        return self.menus.setdefault(name, Menu(self, name))

    def fn_toolbar(self, name, create=True):
        return self.fn_menu(name)

    def fn_createNode(self, typ, knobs="", inpanel=True):
        for folder in self.plugin_paths:
            path = os.path.join(folder, f"{typ}.gizmo")
            if os.path.isfile(path):
                return self.load_gizmo(path, typ)
        raise RuntimeError(f"{typ} is not a node class the stand-in knows (no {typ}.gizmo on the plugin path)")

    def fn_thisNode(self):
        return self.this_node

    def fn_thisKnob(self):
        return self.this_knob

    def fn_root(self):
        return self.root

    def fn_frame(self, f=None):
        if f is not None:
            self.current_frame = int(f)
        return self.current_frame

    def fn_message(self, prompt):
        self.messages.append(prompt)

    def fn_tprint(self, *args, sep=" ", end="\n", file=None):
        self.printed.append(sep.join(str(a) for a in args))

    def fn_executeInMainThreadWithResult(self, call, args=(), kwargs=None):
        if threading.current_thread() is self.main_thread:
            return call(*args, **(kwargs or {}))
        done = threading.Event()
        box: dict = {}
        self.main_queue.put((call, tuple(args), dict(kwargs or {}), done, box))
        done.wait()
        return box.get("result")

    def fn_executeInMainThread(self, call, args=(), kwargs=None):
        self.main_queue.put((call, tuple(args), dict(kwargs or {}), threading.Event(), {}))

    def fn_execute(self, nameOrNode, start, end=None, incr=1, views=None, continueOnError=False):
        self._main_thread_only("nuke.execute")
        node = nameOrNode
        if node._cls != "Write":
            raise RuntimeError(f"{node._name} cannot be executed")
        if node["disable"].value():
            raise RuntimeError(f"{node._name} is disabled")
        for f in range(int(start), int(end) + 1, int(incr)):
            self._write_frame(node, f)

    # -- classes
    def cls_ProgressTask(self, *args, **kwargs):
        _bind("nuke.ProgressTask", [inspect.Signature([inspect.Parameter("title", inspect.Parameter.POSITIONAL_ONLY)])],
              args, kwargs)
        self._record("ProgressTask", args, kwargs)
        return ProgressTask(self, args[0])

    # -- the main thread
    def pump(self, worker: threading.Thread, until=("_finish", "_failed"), timeout: float = 120.0) -> None:
        """Run the calls the worker sends to the main thread until it sends one named in ``until``,
        then wait for the worker to end. Waits on the queue (an event), never sleeps."""
        while True:
            call, args, kwargs, done, box = self.main_queue.get(timeout=timeout)
            try:
                box["result"] = call(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - Nuke prints it; the worker gets None
                box["error"] = exc
                self.printed.append(f"main thread: {type(exc).__name__}: {exc}")
            finally:
                done.set()
            if getattr(call, "__name__", "") in until:
                break
        worker.join(timeout)
        assert not worker.is_alive(), "the worker thread did not end"

    # -- gizmos, buttons, expressions
    def load_gizmo(self, path: str, typ: str) -> Node:
        script = nkscript.parse(pathlib.Path(path).read_text())
        if script.problems:
            raise RuntimeError(f"{path}: {script.problems}")
        head = script.nodes[0]
        count = sum(1 for c in self.root._children if c._cls == typ)
        gizmo = Node(self, typ, f"{typ}{count + 1}", parent=self.root, stub="Gizmo")
        self.root._children.append(gizmo)
        gizmo._script_knobs = {k: head.value(k) for k in ("knobChanged", "onCreate") if head.value(k)}
        for uk in head.user_knobs:
            stub = USER_KNOB_TYPES[uk.type]
            knob = Knob(self, gizmo, uk.name, stub, items=uk.items, script=uk.text if uk.type == 22 else None)
            knob._value = {"Int_Knob": 0, "Boolean_Knob": False, "Enumeration_Knob": 0}.get(stub, "")
            if stub == "Text_Knob":
                knob._value = uk.text or ""
            if uk.name in head.knobs:
                knob._value = _parse_value(stub, head.value(uk.name), uk.items)
            gizmo._knobs[uk.name] = knob
        made = {}
        for inner in script.nodes[1:]:
            child = Node(self, inner.cls, inner.name, parent=gizmo, stub="Node")
            table = {**COMMON_KNOBS, **NODE_KNOBS.get(inner.cls, {})}
            for kname, (stub, allowed) in table.items():
                items = allowed if stub in ("Enumeration_Knob",) and allowed else None
                k = Knob(self, child, kname, stub, items=items)
                k._value = {"Int_Knob": 0, "Boolean_Knob": False, "Enumeration_Knob": 0}.get(stub, "")
                child._knobs[kname] = k
            child._knobs["name"]._value = inner.name
            for kname, tokens in inner.knobs.items():
                if kname not in table:
                    raise RuntimeError(f"{path}: {inner.cls} has no knob {kname!r} (stand-in table)")
                stub, allowed = table[kname]
                tok = tokens[0]
                if tok.kind == "brace" and tok.text.startswith("{") and tok.text.endswith("}"):
                    child._knobs[kname]._expression = tok.text[1:-1]
                    continue
                text = " ".join(t.text for t in tokens)
                if allowed is not None and text not in allowed:
                    raise RuntimeError(f"{path}: {inner.cls}.{kname} {text!r} is not one of {allowed}")
                child._knobs[kname]._value = _parse_value(stub, text, allowed)
            made[id(inner)] = child
            gizmo._children.append(child)
        for inner in script.nodes[1:]:
            made[id(inner)]._inputs = [made.get(id(i)) if i is not None else None for i in inner.inputs]
        return gizmo

    def press(self, node: Node, knob: str) -> None:
        """Press a PyScript button: run its script with ``nuke.thisNode()`` set, as Nuke does."""
        k = node._knobs[knob]
        if k.STUB != "PyScript_Knob":
            raise TypeError(f"{knob} is a {k.STUB}, not a button")
        self._run_script(k._script, node, k)

    def change(self, node: Node, knob: str, value) -> None:
        """Set a knob as the user would, then run the node's knobChanged."""
        node._knobs[knob].setValue(value)
        script = getattr(node, "_script_knobs", {}).get("knobChanged")
        if script:
            self._run_script(script, node, node._knobs[knob])

    def _run_script(self, code: str, node: Node, knob: Knob) -> None:
        before = (self.this_node, self.this_knob)
        self.this_node, self.this_knob = node, knob
        try:
            exec(compile(code, f"<{node._name}.{knob._name}>", "exec"), {"nuke": self.module})
        finally:
            self.this_node, self.this_knob = before

    def _tcl(self, text: str, node: Node) -> str:
        def value(m):
            owner = node._parent if m.group(1) == "parent" else node
            return str(owner._knobs[m.group(2)].value())

        out = re.sub(r"\[value (parent|this)\.(\w+)\]", value, text)
        if "[" in out:
            raise ValueError(f"the stand-in evaluates [value parent.x] only: {text!r}")
        return out

    def read_path(self, read: Node, frame: int) -> str:
        """The file Nuke's Read would open for ``frame``."""
        pattern = read["file"].evaluate()
        return re.sub(r"#+", lambda m: f"{frame:0{len(m.group(0))}d}", pattern)

    # -- rendering
    def _upstream(self, node: Node, frame: int):
        src = node.input(0)
        while src is not None and src._pixels is None:
            if src._cls == "Input":  # a group's Input: the group's own input
                src = src._parent.input(0)
            else:
                src = src.input(0)
        if src is None:
            raise RuntimeError(f"{node._name} has no image input")
        return src._pixels(frame)

    def _write_frame(self, write: Node, frame: int) -> None:
        from hdrlift.plugin import openexr

        if write["file_type"].value() != "exr":
            raise RuntimeError("the stand-in renders EXR only")
        if write["channels"].value() != "rgb":
            raise RuntimeError(f"channels {write['channels'].value()!r}: the node reads rgb")
        compression = write["compression"].value()
        if compression not in READABLE_COMPRESSION:
            raise RuntimeError(f"compression {compression!r} is not one the plugin's codec reads")
        if not write["raw"].value():
            raise RuntimeError("the Write must write raw data (no colour conversion)")
        half = write["datatype"].value() == "16 bit half"
        path = write["file"].evaluate()
        if not path:
            raise RuntimeError("Write has no file")
        path = re.sub(r"#+", lambda m: f"{frame:0{len(m.group(0))}d}", path)
        pixels = self._upstream(write, frame)
        window = None
        if isinstance(pixels, tuple):
            pixels, window = pixels
        if window is None:
            planes = {c: pixels[..., i] for i, c in enumerate("RGB")}
            data = openexr.encode(planes, half=half, compression=READABLE_COMPRESSION[compression],
                                  attributes={"nuke/node_hash": "b0a1f00d", "nuke/full_layer_names": 0,
                                              "exr/software": "stand-in"})
        else:
            data = exr_with_windows(pixels, window, half=half)
        with open(path, "wb") as fh:
            fh.write(data)


def _parse_value(stub: str, text, items):
    if text is None:
        return None
    if stub == "Int_Knob":
        return int(text)
    if stub == "Boolean_Knob":
        return text in ("true", "1")
    if stub == "Enumeration_Knob":
        return items.index(text) if items else 0
    return text


def exr_with_windows(data_rgb, window: tuple[tuple[int, int, int, int], tuple[int, int, int, int]],
                     half: bool) -> bytes:
    """An uncompressed scanline EXR whose data window (``window[0]``, x0 y0 x1 y1) differs from its
    display window (``window[1]``), as Nuke writes an image whose bounding box is not its format."""
    import struct

    (x0, y0, x1, y1), display = window
    h, w = y1 - y0 + 1, x1 - x0 + 1
    assert data_rgb.shape == (h, w, 3)
    ptype, dt = (1, "<f2") if half else (2, "<f4")

    def attr(name, kind, value):
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    chans = b"".join(c.encode() + b"\0" + struct.pack("<iB3xii", ptype, 0, 1, 1) for c in "BGR") + b"\0"
    head = (b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + attr("channels", "chlist", chans)
            + attr("compression", "compression", b"\0") + attr("dataWindow", "box2i", struct.pack("<4i", x0, y0, x1, y1))
            + attr("displayWindow", "box2i", struct.pack("<4i", *display)) + attr("lineOrder", "lineOrder", b"\0")
            + attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
            + attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0)) + attr("screenWindowWidth", "float", struct.pack("<f", 1))
            + b"\0")
    blocks = []
    for row in range(h):
        raw = b"".join(data_rgb[row, :, i].astype(dt).tobytes() for i in (2, 1, 0))  # B, G, R: name order
        blocks.append(struct.pack("<ii", y0 + row, len(raw)) + raw)
    pos = len(head) + 8 * h
    offsets = []
    for b in blocks:
        offsets.append(pos)
        pos += len(b)
    return head + struct.pack(f"<{h}Q", *offsets) + b"".join(blocks)


def make_plate(nk: Nuke, pixels, first: int, last: int, name: str = "Read1") -> Node:
    """A node standing for the plate's Read: ``pixels(frame)`` gives its scene-linear frames."""
    plate = Node(nk, "Read", name, parent=nk.root)
    plate._pixels = pixels
    plate._frames = (first, last)
    nk.root._children.append(plate)
    return plate
