"""Fixtures of the Nuke suite: the plug-in folder under test, the stand-in ``nuke`` module, a real
``hdrlift-serve``.

The plug-in folder is ``$HDRLIFT_NUKE_DIST`` (``make test-nuke`` builds it with
``nodes/nuke/build.py``: the client and grpcio/protobuf/numpy vendored) or, without it, the source
folder ``nodes/nuke/plugin`` with this environment's packages. With a built folder, its
``site-packages/<this Python>`` is appended to ``sys.path`` here, as ``init.py`` does in Nuke, so
the suite runs on the vendored packages (``make test-nuke`` runs it in a virtual environment that
holds only pytest and the types-nuke stubs).
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE = REPO / "nodes" / "nuke" / "plugin"
DIST = os.environ.get("HDRLIFT_NUKE_DIST")
PLUGIN = pathlib.Path(DIST).resolve() if DIST else SOURCE

sys.path.insert(0, str(PLUGIN / "python"))
import hdrlift_nuke.vendor  # noqa: E402  (standard library only)

VENDORED = hdrlift_nuke.vendor.activate(str(PLUGIN)) if DIST else None
if DIST and VENDORED is None:
    raise RuntimeError(f"{PLUGIN} has no site-packages folder for {hdrlift_nuke.vendor.site_tag()} (build.py --python)")

import standin  # noqa: E402
from real_server import ServerProcess, engine_python  # noqa: E402

STUBS_FOLDER = standin.stubs_folder()
_STUBS = standin.Stubs(STUBS_FOLDER) if STUBS_FOLDER else None


def stubs() -> standin.Stubs:
    if _STUBS is None:
        pytest.skip("the types-nuke stubs are not installed (make test-nuke installs them; pip install types-nuke)")
    return _STUBS


def _forget_node_module() -> None:
    for name in [m for m in sys.modules if m == "nuke" or m == "hdrlift_nuke.node"]:
        del sys.modules[name]


def make_nuke(gui: bool = False, run_menu: bool = False) -> standin.Nuke:
    """A fresh stand-in installed as ``nuke``, with the plug-in's init.py (and menu.py) run as Nuke
    runs them: relative plug-in paths resolve against the plug-in folder."""
    nk = standin.Nuke(stubs(), gui=gui)
    _forget_node_module()
    sys.modules["nuke"] = nk.module
    nk.plugin_dir = str(PLUGIN)
    for name in ("init.py",) + (("menu.py",) if run_menu else ()):
        code = (PLUGIN / name).read_text()
        exec(compile(code, str(PLUGIN / name), "exec"), {"__name__": "__main__"})
    return nk


@pytest.fixture
def nuke_term():
    """The stand-in as under ``nuke -t`` (no GUI)."""
    nk = make_nuke(gui=False)
    yield nk
    _forget_node_module()


@pytest.fixture
def nuke_gui():
    """The stand-in as in the GUI (init.py, then menu.py)."""
    nk = make_nuke(gui=True, run_menu=True)
    yield nk
    _forget_node_module()


@pytest.fixture
def node_module():
    """``hdrlift_nuke.node`` imported against the stand-in currently installed."""
    return importlib.import_module("hdrlift_nuke.node")


@pytest.fixture(scope="session")
def server():
    if engine_python() is None:
        pytest.skip("no Python with the hdrlift engine to run the server (set HDRLIFT_SERVER_PYTHON)")
    with ServerProcess("--model", "inverse-crf", "--backend", "torch", "--preload", "inverse-crf",
                       "--preload", "hdrcnn-lite") as s:
        yield s
