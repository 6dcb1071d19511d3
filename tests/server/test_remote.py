"""``convert_remote`` (hdr-video --server): local decode and EXR writing, frames on server(s),
round-robin over several servers and fail-over when one shuts down mid-clip."""

from __future__ import annotations

import os
import threading

import numpy as np
from server_helpers import frame, reference, wait_for

from hdrlift.engine.io.exr import read_exr
from hdrlift.plugin import Client
from hdrlift.plugin.client import channel_target, convert_remote


def test_convert_remote_equals_local_conversion(sample_clip, address, tmp_path):
    seen = []
    rep = convert_remote(sample_clip, tmp_path / "remote", address, model="landis", mask_layer=True,
                         progress=lambda d, t, e: seen.append((d, t)))
    assert rep.frames == 12 and len(rep.written) == 12 and rep.output_space == "ACEScg"
    assert seen[-1] == (12, 12)
    local = reference("landis")
    local.options.mask_layer = True
    try:
        local.convert(sample_clip, tmp_path / "local")
    finally:
        local.options.mask_layer = False
    names = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(tmp_path / "remote")) == names and len(names) == 12
    for n in names:
        a, b = read_exr(tmp_path / "remote" / n), read_exr(tmp_path / "local" / n)
        assert a.channels == b.channels and np.array_equal(a.pixels, b.pixels)
        for k in ("hdrlift:model", "hdrlift:colorspace", "hdrlift:input_colorspace", "hdrlift:source_frame"):
            assert a.attributes[k] == b.attributes[k]
    # resume skips finished frames
    rep2 = convert_remote(sample_clip, tmp_path / "remote", address, model="landis", resume=True)
    assert len(rep2.skipped) == 12 and not rep2.written


def test_round_robin_over_two_servers_and_failover(make_server):
    a, b = make_server(), make_server()
    servers = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    assert channel_target(servers)[0] == f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    x = frame(32, 32)
    with Client(servers) as c:
        c.wait_ready()
        for _ in range(8):
            c.reconstruct(x)
    assert a.metrics.total_frames() > 0 and b.metrics.total_frames() > 0  # gRPC round_robin
    # a long stream; one server shuts down part way: its unanswered frames go to the other
    inputs = [frame(270, 480, seed=i) for i in range(40)]
    got = []
    before = {id(a): a.metrics.total_frames(), id(b): b.metrics.total_frames()}
    with Client(servers) as c:
        c.wait_ready()
        it = c.reconstruct_frames(inputs, window=4)
        for r in it:
            got.append(r)
            if len(got) == 5:
                victim = a if a.metrics.total_frames() > before[id(a)] else b  # the one streaming
                survivor = b if victim is a else a
                threading.Thread(target=victim.shutdown, kwargs={"grace": 10}).start()
    assert wait_for(lambda: victim.wait(0))
    assert victim.metrics.count("ReconstructStream", "UNAVAILABLE") == 1  # it told the client to go elsewhere
    assert survivor.metrics.total_frames() - before[id(survivor)] > 0
    assert victim.metrics.total_frames() + survivor.metrics.total_frames() - sum(before.values()) == 40
    ref = reference("landis")
    assert len(got) == 40
    for x_, r in zip(inputs, got):
        assert np.array_equal(r.hdr, ref.process(x_).hdr)


def test_hdr_video_server_flag_equals_local_run(sample_clip, address, tmp_path, capsys):
    """``hdr-video --server``: the CLI path writes the same EXRs, bit for bit, as a local run
    of the same model on the same back end."""
    from hdrlift.engine.cli import video_main

    assert video_main([str(sample_clip), str(tmp_path / "remote"), "--server", address, "--model", "landis",
                       "--frames", "3-7", "--every", "2", "--mask-layer", "-q"]) == 0
    assert video_main([str(sample_clip), str(tmp_path / "local"), "--model", "landis", "--backend", "torch",
                       "--frames", "3-7", "--every", "2", "--mask-layer", "-q"]) == 0
    names = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(tmp_path / "remote")) == names == [f"street.{n:04d}.exr" for n in (3, 5, 7)]
    for n in names:
        a, b = read_exr(tmp_path / "remote" / n), read_exr(tmp_path / "local" / n)
        assert a.channels == b.channels and np.array_equal(a.pixels, b.pixels)
    # an existing output is refused without --resume/--overwrite, as locally
    assert video_main([str(sample_clip), str(tmp_path / "remote"), "--server", address, "--model", "landis",
                       "--frames", "3-3", "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]


def test_hdr_video_server_errors_are_one_line(sample_clip, address, tmp_path, capsys):
    from hdrlift.engine.cli import video_main

    # nothing listens on port 1: UNAVAILABLE after gRPC's retries, exit 6, no EXR left behind
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", "127.0.0.1:1", "-q",
                       "--server-timeout", "3"]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hdr-video: error: server: ") and "UNAVAILABLE" in err[0], err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    # the server refuses an unknown model with a proper status; options that only make sense locally are refused
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--model", "nope", "-q"]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0], err
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--backend", "torch", "-q"]) == 2
    assert "applies to local runs" in capsys.readouterr().err
