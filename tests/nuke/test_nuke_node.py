"""The thin layer that calls Nuke (``hdrlift_nuke.node``, ``init.py``, ``menu.py``, the gizmo's
buttons) against the stand-in ``nuke`` module held to the types-nuke stubs, with a real
``hdrlift-serve``. None of this ran inside Nuke (docs/nuke.md)."""

from __future__ import annotations

import ast
import os
import pathlib
import socket
import sys

import hdrlift_nuke.vendor
import numpy as np
import pytest
import standin
from conftest import PLUGIN, VENDORED, stubs

from hdrlift.plugin import openexr

FIRST, LAST = 1001, 1003


def plate_frame(frame: int, h: int = 20, w: int = 28) -> np.ndarray:
    """Scene-linear Rec.709 as a Read of an sRGB plate gives it: mostly in [0, 1], a clipped
    block, a negative and an above-white value (the node clips them as an SDR plate holds none)."""
    rng = np.random.default_rng(frame)
    img = rng.random((h, w, 3), dtype=np.float32) ** 2.2
    img[:4, :5] = 1.0
    img[5, 5] = [-0.1, 2.0, 0.5]
    return img.astype(np.float32)


def make_node(nk, server, *, pixels=plate_frame, first=FIRST, last=LAST, model="inverse-crf", **knobs):
    node = nk.module.createNode("HdrLift")
    plate = standin.make_plate(nk, pixels, first, last)
    node.setInput(0, plate)
    node["servers"].setValue(server.address if server else "127.0.0.1:1")
    node["model"].setValue(model)
    for k, v in knobs.items():
        node[k].setValue(v)
    return node, plate


def result(nk, node, frame):
    read = node.node("HdrLiftResult")
    path = nk.read_path(read, frame)
    planes, attrs = openexr.decode(pathlib.Path(path).read_bytes())
    return planes, attrs, path


# --------------------------------------------------------------------------- init.py, menu.py
def test_init_py_adds_the_subfolders_and_this_pythons_vendored_packages(nuke_term):
    adds = nuke_term.called("pluginAddPath")
    assert [(c[1], c[2]) for c in adds] == [(("./python",), {}), (("./gizmos",), {"addToSysPath": False}),
                                           (("./icons",), {"addToSysPath": False})]
    assert str(PLUGIN / "python") in sys.path
    assert not nuke_term.menus  # init.py runs under nuke -t too: it touches no menu
    if VENDORED:  # a built folder: this Python's vendored packages come after everything else
        assert VENDORED in sys.path and os.path.basename(VENDORED) == hdrlift_nuke.vendor.site_tag()
        assert sys.path.index(VENDORED) > sys.path.index(str(PLUGIN / "python"))


def test_menu_py_adds_the_toolbar_icon_and_the_node_entry(nuke_gui):
    nodes_menu = nuke_gui.menus["Nodes"]
    sub = nodes_menu.findItem("hdrlift")
    assert sub._icon == "hdrlift.png"
    entry = sub.findItem("HdrLift")
    assert entry["icon"] == "hdrlift.png"
    assert any(os.path.isfile(os.path.join(p, "hdrlift.png")) for p in nuke_gui.plugin_paths)
    exec(entry["command"], {"nuke": nuke_gui.module})  # what clicking it runs
    made = [c for c in nuke_gui.root._children if c._cls == "HdrLift"]
    assert len(made) == 1 and made[0].node("HdrLiftInput") is not None


# --------------------------------------------------------------------------- runs (nuke -t)
def test_reconstruct_button_renders_sends_writes_and_points_the_read_at_the_results(nuke_term, server, tmp_path):
    node, _ = make_node(nuke_term, server, cache_folder=str(tmp_path / "cache"))
    nuke_term.press(node, "reconstruct")
    write = node.node("HdrLiftInput")
    executed = nuke_term.called("execute")
    assert [(c[1][0] is write, c[1][1], c[1][2]) for c in executed] == [(True, f, f) for f in range(FIRST, LAST + 1)]
    assert all(c[3] == "MainThread" for c in executed)
    assert write["disable"].value() is True  # disabled again: Render All leaves it alone
    task = nuke_term.tasks[-1]
    assert task._progress[-1] == 100 and task._progress == sorted(task._progress)
    assert node["status"].value().startswith("3 written, 0 unchanged (inverse-crf")
    assert (node["results_first"].value(), node["results_last"].value()) == (FIRST, LAST)
    read = node.node("HdrLiftResult")
    assert read["first"].value() == FIRST and read["last"].value() == LAST
    assert nuke_term.called("Script_Knob.execute")  # the Read reloaded
    for f in range(FIRST, LAST + 1):
        planes, attrs, path = result(nuke_term, node, f)
        assert sorted(planes) == ["B", "G", "R", "mask.Y"]  # the mask comes in as Nuke's layer "mask"
        hdr = np.stack([planes[c] for c in "RGB"], -1)
        # inverse-crf is the inverse sRGB curve: back to the linear input, clipped to [0, 1]
        np.testing.assert_allclose(hdr, np.clip(plate_frame(f), 0, 1), atol=2e-3)
        assert attrs["hdrlift:source_frame"] == f and attrs["hdrlift:model"] == "inverse-crf"
        assert attrs["hdrlift:colorspace"] == "lin_rec709" and attrs["hdrlift:input_colorspace"] == "srgb"
        assert os.path.dirname(path).startswith(str(tmp_path / "cache"))
    assert not os.path.exists(os.path.join(os.path.dirname(path), ".input"))  # temporary renders removed


def test_rerun_skips_unchanged_frames_and_resends_changed_input_or_settings(nuke_term, server, tmp_path):
    frames = {f: plate_frame(f) for f in range(FIRST, LAST + 1)}
    node, _ = make_node(nuke_term, server, pixels=lambda f: frames[f], cache_folder=str(tmp_path))
    nuke_term.press(node, "reconstruct")
    first_folder = os.path.dirname(nuke_term.read_path(node.node("HdrLiftResult"), FIRST))
    nuke_term.press(node, "reconstruct")
    assert node["status"].value().startswith("0 written, 3 unchanged")
    frames[FIRST + 1] = frames[FIRST + 1] * np.float32(0.5)
    nuke_term.press(node, "reconstruct")
    assert node["status"].value().startswith("1 written, 2 unchanged")
    planes, _, _ = result(nuke_term, node, FIRST + 1)
    np.testing.assert_allclose(planes["G"], np.clip(frames[FIRST + 1][..., 1], 0, 1), atol=2e-3)
    nuke_term.change(node, "output_space", "ACEScg")  # a setting that changes the pixels: a new folder
    nuke_term.press(node, "reconstruct")
    assert node["status"].value().startswith("3 written, 0 unchanged")
    assert os.path.dirname(nuke_term.read_path(node.node("HdrLiftResult"), FIRST)) != first_folder
    _, attrs, _ = result(nuke_term, node, FIRST)
    assert attrs["hdrlift:colorspace"] == "acescg"


def test_reconstruct_this_frame_and_a_given_range(nuke_term, server, tmp_path):
    node, _ = make_node(nuke_term, server, cache_folder=str(tmp_path), input_range=False)
    node["first_frame"].setValue(FIRST + 1)
    node["last_frame"].setValue(LAST)
    nuke_term.module.frame(FIRST)
    nuke_term.press(node, "reconstruct_frame")
    assert [c[1][1] for c in nuke_term.called("execute")] == [FIRST]
    assert node["status"].value().startswith("1 written")
    nuke_term.press(node, "reconstruct")
    assert [c[1][1] for c in nuke_term.called("execute")] == [FIRST, FIRST + 1, LAST]
    assert (node["results_first"].value(), node["results_last"].value()) == (FIRST, LAST)


def test_cancel_stops_the_run_and_keeps_whole_frames(nuke_term, server, tmp_path):
    node, _ = make_node(nuke_term, server, cache_folder=str(tmp_path))
    nuke_term.cancel_when = f"frame {FIRST} written"  # the user presses Cancel then
    nuke_term.press(node, "reconstruct")
    status = node["status"].value()
    assert "1 written" in status and "cancelled after 1 of 3" in status, status
    folder = os.path.dirname(nuke_term.read_path(node.node("HdrLiftResult"), FIRST))
    assert sorted(os.listdir(folder)) == [f"hdr.{FIRST}.exr"]


def test_an_ACEScg_project_and_the_rec709_transfer(nuke_term, server, tmp_path):
    from hdrlift_nuke import colour

    node, _ = make_node(nuke_term, server, cache_folder=str(tmp_path), working_space="ACEScg",
                        input_transfer="Rec.709")
    to_ap1 = np.linalg.inv(colour.rgb_matrix("ap1", "rec709"))
    acescg = {f: (plate_frame(f) @ to_ap1.T).astype(np.float32) for f in range(FIRST, LAST + 1)}
    node.input(0)._pixels = lambda f: acescg[f]
    nuke_term.press(node, "reconstruct")
    planes, attrs, _ = result(nuke_term, node, FIRST)
    assert attrs["hdrlift:colorspace"] == "acescg" and attrs["hdrlift:input_colorspace"] == "rec709"
    # Rec.709: the camera curve re-applied, the code values read as BT.1886 (gamma 2.4) video, then
    # inverse-crf's inverse sRGB curve: display light, in ACEScg
    code = colour.encode(np.clip(plate_frame(FIRST), 0, 1), "bt709")
    srgb = colour.encode(code ** 2.4, "srgb")
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    expect = lin @ np.linalg.inv(colour.rgb_matrix("ap1", "rec709")).T
    np.testing.assert_allclose(np.stack([planes[c] for c in "RGB"], -1), expect, atol=4e-3)


# --------------------------------------------------------------------------- the GUI
def test_gui_runs_in_a_thread_and_touches_the_graph_only_on_the_main_thread(nuke_gui, server, tmp_path,
                                                                             node_module):
    node, _ = make_node(nuke_gui, server, cache_folder=str(tmp_path))
    worker = node_module.reconstruct(node)
    assert worker is not None and worker.name.startswith("hdrlift")
    assert node_module.reconstruct(node) is None  # a second press while it runs
    assert nuke_gui.messages == ["HdrLift: HdrLift1 is already reconstructing; wait for it or cancel it"]
    nuke_gui.pump(worker)
    assert node["status"].value().startswith("3 written")
    assert {c[3] for c in nuke_gui.called("execute")} == {"MainThread"}
    assert {c[3] for c in nuke_gui.called("ProgressTask.setProgress")} == {worker.name}
    nuke_gui.pump(node_module.reconstruct(node))  # free again once it ended
    assert node["status"].value().startswith("0 written, 3 unchanged")


def test_refresh_models_fills_the_list_and_picking_one_sets_the_model(nuke_gui, server):
    node, _ = make_node(nuke_gui, server, model="")
    nuke_gui.press(node, "refresh_models")
    items = node["models"].values()
    assert items[0] == "(server default): inverse-crf" and {"inverse-crf", "hdrcnn-lite", "landis"} <= set(items)
    assert "kalantari" not in items  # bracket mergers and models without weights are left out
    nuke_gui.change(node, "models", "hdrcnn-lite")
    assert node["model"].value() == "hdrcnn-lite"
    nuke_gui.change(node, "models", items[0])
    assert node["model"].value() == ""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_errors_are_one_line_on_the_node(nuke_gui, nuke_term, server, tmp_path, node_module):
    from hdrlift_nuke.job import NodeError

    node, _ = make_node(nuke_term, None, cache_folder=str(tmp_path))
    node["servers"].setValue(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(NodeError, match="UNAVAILABLE"):
        node_module.reconstruct(node)  # nuke -t: a farm script sees the failure
    assert node["status"].value().startswith("error: server 127.0.0.1:") and "\n" not in node["status"].value()
    node["servers"].setValue(server.address)
    node["model"].setValue("no-such-model")
    with pytest.raises(NodeError, match="NOT_FOUND: unknown model 'no-such-model'"):
        node_module.reconstruct(node)
    node.setInput(0, None)
    with pytest.raises(NodeError, match="has no input: connect the plate"):
        node_module.reconstruct(node)


def test_errors_in_the_gui_show_a_message(nuke_gui, tmp_path, node_module):
    node, _ = make_node(nuke_gui, None, cache_folder=str(tmp_path))
    node["servers"].setValue(f"127.0.0.1:{_closed_port()}")
    worker = node_module.reconstruct(node)
    nuke_gui.pump(worker)
    assert len(nuke_gui.messages) == 1 and nuke_gui.messages[0].startswith("HdrLift: server 127.0.0.1:")


def test_token_file_knob(nuke_term, tmp_path, node_module):
    from hdrlift_nuke.job import NodeError

    from real_server import ServerProcess, engine_python

    if engine_python() is None:
        pytest.skip("no Python with the hdrlift engine")
    (tmp_path / "token").write_text("# farm token\nsecret-1\n")
    (tmp_path / "wrong").write_text("nope\n")
    with ServerProcess("--model", "inverse-crf", "--backend", "torch", env={"HDRLIFT_TOKENS": "secret-1"}) as s:
        node, _ = make_node(nuke_term, s, cache_folder=str(tmp_path / "c"), token_file=str(tmp_path / "wrong"))
        with pytest.raises(NodeError, match="UNAUTHENTICATED"):
            node_module.reconstruct(node, [FIRST])
        node["token_file"].setValue(str(tmp_path / "token"))
        node_module.reconstruct(node, [FIRST])
        assert node["status"].value().startswith("1 written")


# --------------------------------------------------------------------------- the stand-in's strictness
def test_a_misspelt_nuke_call_fails(nuke_term):
    nk = nuke_term.module
    with pytest.raises(standin.StubError):
        nk.exceute  # noqa: B018
    with pytest.raises(TypeError):
        nk.pluginAddPath("./python", addToSyspath=False)
    with pytest.raises(TypeError):
        nk.execute()
    node = nk.createNode("HdrLift")
    with pytest.raises(standin.StubError):
        node["status"].setText("x")  # Text_Knob has setValue, not setText
    with pytest.raises(standin.StubError):
        nk.ProgressTask("x").setProgres(3)
    with pytest.raises(standin.StubError):
        node.inputNode(0)


NUKE_FILES = [PLUGIN / "python" / "hdrlift_nuke" / "node.py", PLUGIN / "init.py", PLUGIN / "menu.py"]


@pytest.mark.parametrize("path", NUKE_FILES, ids=lambda p: p.name)
def test_every_nuke_name_the_code_uses_is_in_the_stubs(path):
    s = stubs()
    tree = ast.parse(path.read_text())
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "nuke"}
    assert used or "import nuke" not in path.read_text()
    unknown = sorted(u for u in used if u not in s.functions and u not in s.classes and u not in s.constants)
    assert not unknown, f"{path.name} uses nuke.{unknown} which types-nuke does not have"
