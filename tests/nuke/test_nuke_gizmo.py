"""The HdrLift gizmo's text, parsed (tests/nuke/nkscript.py): the knobs the Python layer reads, the
buttons' scripts, the internal graph and the Write's settings that the plugin's EXR codec needs."""

from __future__ import annotations

import ast
import pathlib

import nkscript
import pytest
import standin
from conftest import PLUGIN

from hdrlift_nuke import colour

GIZMO = PLUGIN / "gizmos" / "HdrLift.gizmo"
NODE_PY = PLUGIN / "python" / "hdrlift_nuke" / "node.py"


@pytest.fixture(scope="module")
def script() -> nkscript.Script:
    return nkscript.parse(GIZMO.read_text())


@pytest.fixture(scope="module")
def knobs(script):
    return {k.name: k for k in script.nodes[0].user_knobs}


def _node_py():
    tree = ast.parse(NODE_PY.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    subscripts: dict[str, set[str]] = {}  # variable -> the knob names the code reads on it
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
            owner = n.value.id if isinstance(n.value, ast.Name) else ast.unparse(n.value)
            subscripts.setdefault(owner, set()).add(n.slice.value)
    return functions, constants, subscripts


def test_it_parses_cleanly(script):
    assert script.problems == []  # nothing Tcl would evaluate at load ([ or $ in quoted values)
    assert script.version and script.version.split()[0] == "14.0"
    assert script.nodes[0].cls == "Gizmo" and script.nodes[0].value("inputs") == "1"
    assert script.commands[-1] == ["end_group"]


def test_every_user_knob_is_of_a_known_type_and_the_names_are_unique(script):
    names = [k.name for k in script.nodes[0].user_knobs]
    assert len(names) == len(set(names))
    assert {k.type for k in script.nodes[0].user_knobs} <= set(standin.USER_KNOB_TYPES)


EXPECTED = {  # knob -> user knob type: what hdrlift_nuke.node reads and writes
    "servers": 1, "model": 1, "models": 4, "refresh_models": 22, "token_file": 2, "ca_file": 2, "input_range": 6,
    "first_frame": 3, "last_frame": 3, "input_transfer": 4, "working_space": 4, "output_space": 4, "half": 6,
    "cache_folder": 2, "reconstruct": 22, "reconstruct_frame": 22, "status": 26, "results": 1,
    "results_first": 3, "results_last": 3,
}


def test_the_knobs_the_python_layer_uses_exist_with_their_types(knobs):
    assert {n: knobs[n].type for n in EXPECTED if n in knobs} == EXPECTED
    _, _, subscripts = _node_py()
    assert subscripts["node"] <= set(knobs), subscripts["node"] - set(knobs)
    assert subscripts["nuke.thisNode()"] <= set(knobs)
    assert {"results", "results_first", "results_last"} <= {k for k in knobs if "+INVISIBLE" in knobs[k].flags}


def test_the_menus_match_the_colour_module(knobs):
    assert knobs["input_transfer"].items == list(colour.TRANSFERS)
    assert knobs["working_space"].items == list(colour.WORKING_SPACES)
    assert knobs["output_space"].items == list(colour.OUTPUT_SPACES)


def test_the_buttons_call_functions_of_the_node_module(script, knobs):
    functions, _, _ = _node_py()
    scripts = {n: k.text for n, k in knobs.items() if k.type == 22}
    scripts["knobChanged"] = script.nodes[0].value("knobChanged")
    assert set(scripts) == {"refresh_models", "reconstruct", "reconstruct_frame", "knobChanged"}
    for name, code in scripts.items():
        tree = ast.parse(code)  # valid Python
        calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
        called = [c.split(".")[-1] for c in calls if c.startswith("hdrlift_nuke.node.")]
        assert len(called) == 1 and called[0] in functions, (name, calls)


def test_the_internal_graph(script):
    _, constants, subscripts = _node_py()
    write, read = script.node(constants["WRITE"]), script.node(constants["READ"])
    assert [n.cls for n in script.nodes[1:]] == ["Input", "Write", "Read", "Output"]
    assert write.inputs == [script.node("Input1")] and script.node("Output1").inputs == [read]
    # what the plugin's strict EXR codec reads back: rgb, half or float, none or zip(s), no colour change
    assert write.value("file_type") == "exr" and write.value("channels") == "rgb"
    assert write.value("datatype") in ("16 bit half", "32 bit float")
    assert write.value("compression") in standin.READABLE_COMPRESSION
    assert write.value("raw") == "true" and write.value("disable") == "true"
    # the Read follows hidden knobs of the gizmo, so the results survive saving the script
    assert read.value("file") == "[value parent.results]" and read.value("inputs") == "0"
    assert read.token("first").kind == "brace" and read.token("first").text == "{parent.results_first}"
    assert read.token("last").text == "{parent.results_last}"
    assert read.value("raw") == "true" and read.value("on_error") == "black"
    assert subscripts["write"] <= set(standin.NODE_KNOBS["Write"]) | set(standin.COMMON_KNOBS)
    assert subscripts["read"] <= set(standin.NODE_KNOBS["Read"]) | set(standin.COMMON_KNOBS)
    for node in script.nodes[1:]:
        table = {**standin.COMMON_KNOBS, **standin.NODE_KNOBS[node.cls]}
        assert set(node.knobs) <= set(table), (node.cls, set(node.knobs) - set(table))


def test_the_reader_catches_what_nuke_would_evaluate():
    bad = nkscript.parse('Gizmo {\n inputs 1\n}\n Read {\n  inputs 0\n  file "[value parent.x]/$HOME"\n }\nend_group\n')
    assert len(bad.problems) == 2
    with pytest.raises(nkscript.NkSyntaxError):
        nkscript.parse("Gizmo {\n inputs 1\n")


def test_the_icon_is_a_png():
    data = (PLUGIN / "icons" / "hdrlift.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
