"""A pool of hdrlift-serve processes behind one client channel: gRPC's round_robin places each
short call, health checking keeps draining servers out, and a server killed mid-clip loses no
frame (its frames are resent to the others)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from real_server import ServerProcess
from server_helpers import reference

from hdrlift.engine.io.exr import read_exr
from hdrlift.engine.remote import convert_remote
from hdrlift.plugin.client import channel_target, service_config

ARGS = ("--model", "landis", "--backend", "torch", "--max-batch", "1")


def _served(server: ServerProcess) -> int:
    """Frames the server says it reconstructed, from its own ``stopped`` line."""
    stopped = [json.loads(ln) for ln in server.lines if ln.startswith("{") and '"stopped"' in ln]
    return stopped[-1]["frames"]


@pytest.fixture
def clip(tmp_path):
    from hdrlift.engine.sample import write_sample

    return write_sample(tmp_path / "pool.mp4", width=64, height=48, frames=36)


def _check_all(clip, out, tmp_path):
    reference("landis").convert(clip, tmp_path / "local")
    names = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(out)) == names and len(names) == 36
    for n in names:
        assert np.array_equal(read_exr(out / n).pixels, read_exr(tmp_path / "local" / n).pixels), n


def test_round_robin_spreads_short_calls_over_three_servers(clip, tmp_path):
    with ServerProcess(*ARGS) as a, ServerProcess(*ARGS) as b, ServerProcess(*ARGS) as c:
        servers = ",".join(s.address for s in (a, b, c))
        assert channel_target(servers)[0] == "ipv4:" + servers  # one channel, gRPC balances it
        assert '"healthCheckConfig"' in service_config()
        rep = convert_remote(clip, tmp_path / "remote", servers, model="landis", frames_per_call=2, window=2)
        assert rep.frames == 36 and len(rep.written) == 36
        for s in (a, b, c):
            assert s.stop() == 0
    counts = [_served(s) for s in (a, b, c)]
    assert sum(counts) == 36 and min(counts) > 0, counts  # every server took calls
    _check_all(clip, tmp_path / "remote", tmp_path)


def test_a_killed_server_loses_no_frame(clip, tmp_path):
    with ServerProcess(*ARGS) as a, ServerProcess(*ARGS) as b, ServerProcess(*ARGS) as c:
        servers = ",".join(s.address for s in (a, b, c))
        killed = []

        def progress(done, total, elapsed):
            if done >= 6 and not killed:
                a.proc.send_signal(signal.SIGKILL)  # no drain, no goodbye
                killed.append(done)

        rep = convert_remote(clip, tmp_path / "remote", servers, model="landis", frames_per_call=2, window=2,
                             progress=progress, retries=8)
        assert killed and a.proc.wait(30) == -signal.SIGKILL
        assert rep.frames == 36 and len(rep.written) == 36
        for s in (b, c):
            assert s.stop() == 0
        assert 0 < _served(b) + _served(c) <= 36
    _check_all(clip, tmp_path / "remote", tmp_path)
