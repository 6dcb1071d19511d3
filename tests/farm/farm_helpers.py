"""Helpers for the render-farm tests: job bundles run by the real ``openjd`` CLI on the sample clip.

Every process here is waited on by events (its exit, a file appearing, a log line), each wait
bounded by a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys
import time

import pytest

BIN = pathlib.Path(sys.executable).parent


def exe(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {BIN} (pip install -e '.[farm]')")
    return str(path)


def wait_for(predicate, seconds: float, what: str, step: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(step)


def hdr_video(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([exe("hdr-video"), *map(str, args), "--quiet"], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def farm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([exe("hdrlift-farm"), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def make_bundle(clip: pathlib.Path, out: pathlib.Path, bundle: pathlib.Path, *args: str) -> pathlib.Path:
    """``hdrlift-farm openjd CLIP OUT --bundle BUNDLE ARGS``, in this process (the CLI's own exit
    status and messages are tested in a subprocess by test_refusals.py)."""
    from hdrlift.engine.farm.cli import main

    argv = ["openjd", str(clip), str(out), "--bundle", str(bundle), "--hdrlift-farm", exe("hdrlift-farm"), *args]
    assert main(argv) == 0
    return bundle


def openjd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``openjd ARGS`` (stdout and stderr together in ``.stdout``)."""
    return subprocess.run([exe("openjd"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def run_bundle(bundle: pathlib.Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return openjd("run", bundle / "template.yaml", "-p", f"file://{bundle / 'openjd-params.json'}", *args,
                  timeout=timeout)


def exr_names(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.exr") if not p.name.startswith("."))


def assert_same_bytes(got: pathlib.Path, want: pathlib.Path, count: int) -> None:
    names = exr_names(want)
    assert len(names) == count
    assert exr_names(got) == names
    match, mismatch, errors = filecmp.cmpfiles(got, want, names, shallow=False)
    assert not mismatch and not errors, f"differ: {mismatch}, unreadable: {errors}"
    assert not [p.name for p in got.iterdir() if p.name.startswith(".")], "temporary files left behind"


def started_port(log: pathlib.Path) -> int | None:
    """The port of hdrlift-serve's ``started`` line in ``log``, once it is there."""
    from hdrlift.engine.farm.worker import started_port as port

    return port(log)


def session_server_pids(output: str) -> tuple[int, int, str]:
    """(supervisor pid, hdrlift-serve pid, address) from the job log of a session server."""
    sup = srv = addr = None
    for line in output.splitlines():
        if "hdrlift-farm: starting" in line and "supervisor pid" in line:
            sup = int(line.split("supervisor pid", 1)[1].split(",")[0])
        if "hdrlift-farm: hdrlift-serve pid" in line and "listening on" in line:
            rest = line.split("hdrlift-serve pid", 1)[1].split()
            srv, addr = int(rest[0]), rest[3].rstrip(",")
    assert sup and srv and addr, output
    return sup, srv, addr


def process_gone(pid: int) -> bool:
    from hdrlift.engine.farm.worker import alive

    return not alive(pid)
