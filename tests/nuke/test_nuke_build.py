"""``nodes/nuke/build.py``'s NUKE_PATH folder (``make test-nuke`` builds it for this machine and
points ``$HDRLIFT_NUKE_DIST`` at it): its layout, and a run in a Python that has nothing but the
folder (``-I -S``: no site-packages), as in Nuke's own Python; then the same with older grpcio and
protobuf, the ones the newest wheels for Python 3.9 (Nuke 14) are, with the client's stubs
generated again by the build. The Pythons 3.9 and 3.10 themselves are not on this machine."""

from __future__ import annotations

import filecmp
import json
import os
import pathlib
import subprocess
import sys

import pytest
import standin
from conftest import DIST, PLUGIN, REPO, SOURCE

from hdrlift_nuke import vendor

pytestmark = pytest.mark.skipif(not DIST, reason="no built folder: make test-nuke builds one ($HDRLIFT_NUKE_DIST)")
HERE = pathlib.Path(__file__).resolve().parent


def _same_files(a: pathlib.Path, b: pathlib.Path, pattern: str) -> None:
    names = sorted(str(p.relative_to(a)) for p in a.rglob(pattern) if "__pycache__" not in p.parts)
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob(pattern) if "__pycache__" not in p.parts)
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch + errors


def test_the_folder_layout():
    manifest = json.loads((PLUGIN / "BUILD.json").read_text())
    tag = vendor.site_tag()
    assert tag in manifest["site-packages"]
    site = PLUGIN / "site-packages" / tag
    for name in ("init.py", "menu.py", "gizmos/HdrLift.gizmo", "icons/hdrlift.png"):
        assert (PLUGIN / name).read_bytes() == (SOURCE / name).read_bytes()
    _same_files(PLUGIN / "python" / "hdrlift_nuke", SOURCE / "python" / "hdrlift_nuke", "*.py")
    assert {p.name for p in site.iterdir()} >= {"grpc", "google", "numpy", "hdrlift"}
    assert not (site / "hdrlift" / "engine").exists() and not (site / "torch").exists()
    if manifest["site-packages"][tag]["stubs"] == "as committed":
        _same_files(site / "hdrlift" / "plugin", REPO / "plugin", "*.py")


def _isolated_run(plugin: pathlib.Path, server, tmp_path) -> dict:
    stubs = standin.stubs_folder()
    if stubs is None:
        pytest.skip("the types-nuke stubs are not installed")
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-I", "-S", str(HERE / "isolated_run.py"), str(plugin), str(stubs),
                        server.address, str(out)], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


ALLOWED = {"__main__", "nuke", "standin", "nkscript", "hdrlift", "hdrlift_nuke", "numpy", "grpc", "google",
           "typing_extensions", "cython_runtime"}


def test_the_folder_runs_in_a_python_with_nothing_else(server, tmp_path):
    rep = _isolated_run(PLUGIN, server, tmp_path)
    assert rep["flags"] == [1, 1]
    assert rep["status"].startswith("2 written, 0 unchanged (inverse-crf") and rep["worst"] < 2e-3
    site = str(PLUGIN / "site-packages" / vendor.site_tag())
    assert rep["numpy"].startswith(site) and rep["grpc"].startswith(site)
    assert {m for m in rep["modules"] if not m.startswith("_cython")} <= ALLOWED, rep["modules"]


def test_older_grpcio_and_protobuf_get_stubs_they_accept(server, tmp_path):
    """Python 3.9 (Nuke 14) stops at protobuf 6 and grpcio 1.80, older than the versions that made
    the committed stubs: the build generates them again. Tried here with those wheels for this Python."""
    sys.path.insert(0, str(REPO / "nodes" / "nuke"))
    try:
        import build
    finally:
        sys.path.pop(0)
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    folder = build.build(tmp_path / "old", [py], [None], pins=["protobuf==6.33.6", "grpcio==1.80.1"],
                         tools=pathlib.Path(DIST).resolve().parent / ".tools")
    info = json.loads((folder / "BUILD.json").read_text())["site-packages"][vendor.site_tag()]
    assert info["stubs"] == "regenerated"
    stubs = (folder / "site-packages" / vendor.site_tag() / "hdrlift" / "plugin" / "v1" / "hdrlift_pb2.py").read_text()
    assert "# Protobuf Python Version: 6." in stubs
    rep = _isolated_run(folder, server, tmp_path)
    assert (rep["grpc_version"], rep["protobuf_version"]) == ("1.80.1", "6.33.6")
    assert rep["status"].startswith("2 written") and rep["worst"] < 2e-3


def test_the_vendored_client_reads_as_python_3_9():
    import ast

    for site in (PLUGIN / "site-packages").iterdir():
        for f in (site / "hdrlift").rglob("*.py"):
            ast.parse(f.read_text(), filename=str(f), feature_version=(3, 9))
