"""Fixtures for the OpenFX plug-in tests: the built bundle and test host (``make test-ofx`` builds
them and sets ``HDRLIFT_OFX_BUILD``), real ``hdrlift-serve`` processes on loopback, and a
controllable fake server for the cases a real one cannot make deterministic (a server that never
answers: timeouts and aborts)."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from ofx_helpers import Blackhole


def _start_server(*args: str, env: dict | None = None):
    """A real hdrlift-serve on 127.0.0.1, port 0; returns (process, port) once its `started` line
    has come (read, not slept for). Its later log lines are drained by a thread into a list."""
    cmd = [sys.executable, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0",
           "--backend", "torch", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    proc.log_lines = []
    first: queue.Queue = queue.Queue()

    def drain():  # the first line (the `started` event) goes to `first`, later ones are kept
        for ln in proc.stderr:
            (first.put if not proc.log_lines and first.empty() else proc.log_lines.append)(ln)
        first.put("")

    threading.Thread(target=drain, daemon=True).start()
    try:
        line = first.get(timeout=300)  # a loaded CI machine takes a while to import torch
    except queue.Empty:
        line = ""
    try:
        start = json.loads(line)
    except json.JSONDecodeError:
        proc.kill()
        raise RuntimeError(f"hdrlift-serve did not start: {line!r} {''.join(proc.log_lines)[-2000:]}") from None
    assert start.get("event") == "started", line
    return proc, int(start["port"])


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def server():
    """The plain server: inverse-crf by default, landis and hdrcnn-lite loaded too."""
    proc, port = _start_server("--model", "inverse-crf", "--preload", "inverse-crf", "--preload", "landis",
                               "--preload", "hdrcnn-lite")
    yield f"127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed for test certificates")
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=hdrlift OFX test CA")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key")}


@pytest.fixture(scope="session")
def secure_server(tmp_path_factory, certs):
    """A server with TLS and a bearer token; returns (address, token file, CA file)."""
    d = tmp_path_factory.mktemp("secure")
    tokens = d / "tokens"
    tokens.write_text("# the farm's tokens\nsecret-ofx-token\n")
    proc, port = _start_server("--model", "inverse-crf", "--token-file", str(tokens), "--tls-cert",
                               str(certs["server.pem"]), "--tls-key", str(certs["server.key"]))
    mine = d / "token"
    mine.write_text("\n# mine\nsecret-ofx-token\n")
    yield f"127.0.0.1:{port}", mine, certs["ca.pem"]
    _stop(proc)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def blackhole():
    b = Blackhole()
    yield b
    b.stop()
