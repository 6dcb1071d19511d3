"""``convert_remote`` (hdr-video --server): local decode and EXR writing, frames on server(s),
round-robin over several servers and fail-over when one shuts down mid-clip."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import OpenImageIO as oiio
from server_helpers import DeviceHold, frame, reference, wait_for

from hdrlift.engine.io.exr import read_exr
from hdrlift.plugin import Client
from hdrlift.engine.remote import convert_remote
from hdrlift.plugin.client import channel_target


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
    a, b = make_server(max_batch=1), make_server(max_batch=1)  # one frame per device call
    servers = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    assert channel_target(servers)[0] == f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    x = frame(32, 32)
    with Client(servers) as c:
        c.wait_ready(60)
        # gRPC round_robin: calls spread once both connections are up (however long that takes)
        assert wait_for(lambda: c.reconstruct(x) is not None and a.metrics.total_frames() > 0
                        and b.metrics.total_frames() > 0)
    # a long stream; one server shuts down part way: its unanswered frames go to the other
    inputs = [frame(72, 96, seed=i) for i in range(40)]
    got = []
    before = {id(a): a.metrics.total_frames(), id(b): b.metrics.total_frames()}
    holds = {id(a): DeviceHold(a, allow=5), id(b): DeviceHold(b, allow=5)}
    with Client(servers) as c:
        c.wait_ready(60)
        for r in c.reconstruct_frames(inputs, window=4):
            got.append(r)
            if len(got) == 5:
                # the server streaming stops at its 6th frame (the client has sent it: its window
                # is 4 frames beyond what it consumed); shut that server down there
                assert wait_for(lambda: holds[id(a)].entered.is_set() or holds[id(b)].entered.is_set())
                victim, survivor = (a, b) if holds[id(a)].entered.is_set() else (b, a)
                holds[id(survivor)].release()
                threading.Thread(target=victim.shutdown, kwargs={"grace": 60}).start()
                assert wait_for(lambda: victim.draining)
                holds[id(victim)].release()
    assert wait_for(lambda: victim.wait(0))
    assert victim.metrics.count("ReconstructStream", "UNAVAILABLE") == 1  # it told the client to go elsewhere
    assert survivor.metrics.total_frames() - before[id(survivor)] > 0
    assert victim.metrics.total_frames() + survivor.metrics.total_frames() - sum(before.values()) == 40
    ref = reference("landis")
    assert len(got) == 40
    for x_, r in zip(inputs, got):
        assert np.array_equal(r.hdr, ref.process(x_).hdr)


def _read_oiio(path) -> tuple:
    """Pixels in the file's own sample type, channel names, sample type and the hdrlift
    attributes, read with OpenImageIO directly."""
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    try:
        spec = inp.spec()
        pixels = inp.read_image(oiio.UNKNOWN)  # native: half stays half
        attrs = {a.name: a.value for a in spec.extra_attribs if a.name.startswith("hdrlift:")}
        return pixels, tuple(spec.channelnames), str(spec.format), spec.get_string_attribute("compression"), attrs
    finally:
        inp.close()


def _same_exrs(remote_dir, local_dir, expected_names):
    names = sorted(os.listdir(local_dir))
    # same names, and nothing else (no hidden temporaries left behind)
    assert sorted(os.listdir(remote_dir)) == names == expected_names
    for n in names:
        ra, rc, rf, rz, rattr = _read_oiio(remote_dir / n)
        la, lc, lf, lz, lattr = _read_oiio(local_dir / n)
        assert (rc, rf, rz) == (lc, lf, lz)
        assert ra.dtype == la.dtype and ra.tobytes() == la.tobytes()  # bit for bit
        for k in ("hdrlift:model", "hdrlift:colorspace", "hdrlift:input_colorspace", "hdrlift:source_frame",
                  "hdrlift:model_version"):
            assert rattr[k] == lattr[k], k
        assert rattr["hdrlift:server"]


def test_hdr_video_server_flag_equals_local_run(sample_clip, address, tmp_path, capsys):
    """``hdr-video --server``: the CLI path writes the same EXRs, bit for bit, as a local run
    of the same model on the same back end (the server's: torch)."""
    from hdrlift.engine.cli import image_main, video_main

    common = ["--model", "landis", "--frames", "3-7", "--every", "2", "--mask-layer", "-q"]
    assert video_main([str(sample_clip), str(tmp_path / "remote"), "--server", address, *common]) == 0
    assert video_main([str(sample_clip), str(tmp_path / "local"), "--backend", "torch", *common]) == 0
    _same_exrs(tmp_path / "remote", tmp_path / "local", [f"street.{n:04d}.exr" for n in (3, 5, 7)])
    assert _read_oiio(tmp_path / "remote" / "street.0003.exr")[1] == ("R", "G", "B", "mask.Y")
    # float output, another compression and output space, an explicit pattern
    opts = ["--model", "landis", "--frames", "1-2", "--float", "--compression", "piz",
            "--output-colorspace", "lin_rec709", "-q"]
    assert video_main([str(sample_clip), str(tmp_path / "rf" / "f_%03d.exr"), "--server", address, *opts]) == 0
    assert video_main([str(sample_clip), str(tmp_path / "lf" / "f_%03d.exr"), "--backend", "torch", *opts]) == 0
    _same_exrs(tmp_path / "rf", tmp_path / "lf", ["f_001.exr", "f_002.exr"])
    assert _read_oiio(tmp_path / "rf" / "f_001.exr")[2] == "float"
    # --resume skips finished frames; an existing output is refused without --resume/--overwrite
    assert video_main([str(sample_clip), str(tmp_path / "remote"), "--server", address, "--model", "landis",
                       "--frames", "3-9", "--resume", "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "remote")) == [f"street.{n:04d}.exr" for n in range(3, 10)]
    assert video_main([str(sample_clip), str(tmp_path / "remote"), "--server", address, "--model", "landis",
                       "--frames", "3-3", "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    # hdr-image --server: one still
    png = tmp_path / "still.png"
    buf = oiio.ImageBuf(np.ascontiguousarray((frame(40, 56, seed=5) * 255 + 0.5).astype(np.uint8)))
    assert buf.write(str(png)), buf.geterror()
    (tmp_path / "ri").mkdir()
    (tmp_path / "li").mkdir()
    assert image_main([str(png), str(tmp_path / "ri" / "still.exr"), "--server", address, "--model", "landis",
                       "-q"]) == 0
    assert image_main([str(png), str(tmp_path / "li" / "still.exr"), "--model", "landis", "--backend", "torch",
                       "-q"]) == 0
    _same_exrs(tmp_path / "ri", tmp_path / "li", ["still.exr"])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_hdr_video_server_errors_are_one_line(sample_clip, address, tmp_path, capsys, monkeypatch):
    from hdrlift.engine.cli import video_main

    monkeypatch.delenv("HDRLIFT_TOKEN", raising=False)
    # nothing listens on this port (bound, never listening): UNAVAILABLE, exit 6, nothing written
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
        t0 = time.monotonic()
        assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", dead, "--retries", "0",
                           "--server-timeout", "20", "-q"]) == 6
        assert time.monotonic() - t0 < 20  # refused at once, not after the deadline
    line = _one_line(capsys)
    assert line.startswith(f"hdr-video: error: server {dead}: UNAVAILABLE: "), line
    assert not (tmp_path / "o").exists()
    # unknown model, model without weights there: refused before anything is decoded or written
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--model", "nope", "-q"]) == 6
    line = _one_line(capsys)
    assert "NOT_FOUND" in line and "nope" in line, line
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--model", "kim", "-q"]) == 6
    assert "FAILED_PRECONDITION" in _one_line(capsys)
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--model", "landis",
                       "--output-colorspace", "no such space", "-q"]) == 6
    assert "NOT_FOUND" in _one_line(capsys)
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
    # options that only make sense locally are refused
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", address, "--backend", "torch", "-q"]) == 2
    assert "applies to local runs" in _one_line(capsys)
    assert video_main([str(sample_clip), str(tmp_path / "o"), "--server", "no-port", "-q"]) != 0
    assert "host:port" in _one_line(capsys)


def test_hdr_video_server_token_and_tls(sample_clip, make_server, certs, tmp_path, capsys, monkeypatch):
    from hdrlift.engine.cli import video_main

    monkeypatch.delenv("HDRLIFT_TOKEN", raising=False)
    s = make_server(preload=("landis",), tokens=("s3cret",), tls_cert=str(certs["server.pem"]),
                    tls_key=str(certs["server.key"]))
    addr = f"127.0.0.1:{s.port}"
    run = [str(sample_clip), None, "--server", addr, "--model", "landis", "--frames", "1-2", "-q",
           "--retries", "0"]
    tls = ["--tls-ca", str(certs["ca.pem"]), "--tls-server-name", "localhost"]
    tokens = tmp_path / "token"
    tokens.write_text("# the farm token\n\ns3cret\n")

    def go(out, *extra):
        return video_main([str(a) if a is not None else str(tmp_path / out) for a in run] + list(extra))

    assert go("a", *tls) == 6  # no token
    assert "UNAUTHENTICATED" in _one_line(capsys)
    bad = tmp_path / "bad"
    bad.write_text("wrong\n")
    assert go("a", *tls, "--token-file", str(bad)) == 6
    assert "UNAUTHENTICATED" in _one_line(capsys)
    assert go("a", "--token-file", str(tokens)) == 6  # plaintext to a TLS port
    assert "UNAVAILABLE" in _one_line(capsys)
    assert go("a", "--token-file", str(tokens), "--tls-ca", str(certs["other.pem"]),
              "--tls-server-name", "localhost") == 6  # a CA that did not sign the server's certificate
    assert "UNAVAILABLE" in _one_line(capsys)
    assert not (tmp_path / "a").exists()
    assert go("a", *tls, "--token-file", str(tokens)) == 0
    assert sorted(os.listdir(tmp_path / "a")) == ["street.0001.exr", "street.0002.exr"]
    monkeypatch.setenv("HDRLIFT_TOKEN", "s3cret")
    assert go("b", *tls) == 0
    assert s.metrics.total_frames() == 4
    assert go("c", *tls, "--token-file", str(tmp_path / "missing")) == 2
    assert "token file" in _one_line(capsys)


def test_a_server_process_killed_mid_clip_loses_no_frame(sample_clip, tmp_path):
    """Two real ``hdrlift-serve`` processes; one is SIGKILLed (no drain, no goodbye) after the
    third frame is written. The client resends what the dead server never answered to the
    other one: every frame arrives, equal to a local run."""
    import json
    import signal
    import subprocess
    import sys

    procs = []
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0",
                 "--model", "landis", "--backend", "torch", "--max-batch", "1"],
                stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}))
        ports = [json.loads(p.stderr.readline())["port"] for p in procs]
        logs: list[list[str]] = [[], []]
        readers = [threading.Thread(target=lambda p=p, out=out: out.extend(p.stderr), daemon=True)
                   for p, out in zip(procs, logs)]  # also keeps the pipes from filling
        for th in readers:
            th.start()
        servers = ",".join(f"127.0.0.1:{port}" for port in ports)
        killed = []

        def progress(done, total, elapsed):
            if done >= 3 and not killed:
                procs[0].send_signal(signal.SIGKILL)
                killed.append(done)

        rep = convert_remote(sample_clip, tmp_path / "remote", servers, model="landis", progress=progress,
                             window=2, retries=8)
        assert killed and procs[0].wait(30) == -signal.SIGKILL
        assert rep.frames == 12 and len(rep.written) == 12
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(60) == 0
        readers[1].join(10)
        stopped = [json.loads(ln) for ln in logs[1] if ln.startswith("{") and '"stopped"' in ln]
        survivor = stopped[-1]["frames"]
        assert 0 < survivor < 12  # both servers worked; the rest came from the survivor
        reference("landis").convert(sample_clip, tmp_path / "local")
        names = sorted(os.listdir(tmp_path / "local"))
        assert sorted(os.listdir(tmp_path / "remote")) == names and len(names) == 12
        for n in names:
            assert np.array_equal(read_exr(tmp_path / "remote" / n).pixels, read_exr(tmp_path / "local" / n).pixels)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
