"""Fixtures for the render-farm tests (helpers in farm_helpers.py)."""

from __future__ import annotations

import pathlib
import signal
import subprocess

import pytest
from farm_helpers import exe, hdr_video, started_port, wait_for


@pytest.fixture(scope="session")
def clip(sample_clip) -> pathlib.Path:
    """The sample clip (12 frames, 96x64, 8-bit H.264) from tests/conftest.py."""
    return sample_clip


@pytest.fixture(scope="session")
def reference_icrf(clip, tmp_path_factory) -> pathlib.Path:
    """One plain ``hdr-video`` run of the whole clip with inverse-crf: the frames every chunked run
    must reproduce byte for byte."""
    d = tmp_path_factory.mktemp("ref-icrf")
    hdr_video(clip, d / "shot.####.exr", "--model", "inverse-crf")
    return d


@pytest.fixture
def external_server(tmp_path):
    """A running ``hdrlift-serve`` (inverse-crf preloaded) on a free loopback port: its address."""
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([exe("hdrlift-serve"), "--host", "127.0.0.1", "--port", "0", "--model",
                                 "inverse-crf", "--preload", "inverse-crf", "--grace", "2"],
                                stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
    try:
        port = wait_for(lambda: started_port(log) or (proc.poll() is not None and pytest.fail(log.read_text())),
                        120, "hdrlift-serve to start")
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
