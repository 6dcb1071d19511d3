"""Bearer tokens, TLS, mutual TLS, and path jobs confined to the server's --root folders."""

from __future__ import annotations

import json
import os
import threading
import pathlib

import grpc
import numpy as np
import OpenImageIO as oiio
import pytest
from server_helpers import frame, reference, wait_for

from hdrlift.engine.io.exr import read_exr
from hdrlift.plugin import Client, RemoteError
from hdrlift.plugin.v1 import hdrlift_pb2 as pb

SC = grpc.StatusCode


def test_bearer_token_rejected_and_accepted(make_server, monkeypatch, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# farm tokens\nsecret-one\n\nsecret-two\n")
    from hdrlift.engine.server import load_tokens

    monkeypatch.setenv("HDRLIFT_TOKENS", "env-token, secret-one")
    assert load_tokens(str(tokens)) == ("secret-one", "secret-two", "env-token")
    s = make_server(tokens=load_tokens(str(tokens)))
    addr = f"127.0.0.1:{s.port}"
    x = frame(16, 16)
    monkeypatch.delenv("HDRLIFT_TOKEN", raising=False)
    for token in (None, "wrong", "secret-onex", "secret", "Secret-two"):
        with Client(addr, token=token, retries=0) as c:
            for call in (lambda: c.reconstruct(x), c.server_info, lambda: list(c.reconstruct_frames([x]))):
                with pytest.raises(RemoteError) as ei:
                    call()
                assert ei.value.code == SC.UNAUTHENTICATED
            assert c.health() == "SERVING"  # probes need no token
    for token in ("secret-two", "env-token"):
        with Client(addr, token=token) as c:
            assert np.array_equal(c.reconstruct(x).hdr, reference("landis").process(x).hdr)
    monkeypatch.setenv("HDRLIFT_TOKEN", "secret-one")
    with Client(addr) as c:
        assert c.server_info().protocol == "hdrlift.v1"
    assert s.metrics.count("Reconstruct", "UNAUTHENTICATED") == 5


def test_tls_and_mutual_tls(make_server, certs):
    x = frame(16, 16)
    ref = reference("landis").process(x).hdr
    s = make_server(tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"]))
    addr = f"127.0.0.1:{s.port}"
    with Client(addr, ca_file=str(certs["ca.pem"]), server_name="localhost") as c:
        assert np.array_equal(c.reconstruct(x).hdr, ref)
    with Client(addr, ca_file=str(certs["other.pem"]), server_name="localhost", retries=0, timeout=60) as c:
        with pytest.raises(RemoteError) as ei:  # server certificate from a CA the client does not trust
            c.reconstruct(x)
        assert ei.value.code == SC.UNAVAILABLE
    with Client(addr, retries=0, timeout=60) as c:  # plaintext to a TLS port
        with pytest.raises(RemoteError) as ei:
            c.reconstruct(x)
        assert ei.value.code == SC.UNAVAILABLE

    m = make_server(tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"]), tls_ca=str(certs["ca.pem"]))
    maddr = f"127.0.0.1:{m.port}"
    with Client(maddr, ca_file=str(certs["ca.pem"]), cert_file=str(certs["client.pem"]),
                key_file=str(certs["client.key"]), server_name="localhost") as c:
        assert np.array_equal(c.reconstruct(x).hdr, ref)
    for cert, key in ((None, None), (certs["other.pem"], certs["other.key"])):
        with Client(maddr, ca_file=str(certs["ca.pem"]), cert_file=cert and str(cert), key_file=key and str(key),
                    server_name="localhost", retries=0, timeout=60) as c:
            with pytest.raises(RemoteError) as ei:
                c.reconstruct(x)
            assert ei.value.code == SC.UNAVAILABLE


def _write_sequence(folder: pathlib.Path, n: int, h: int = 48, w: int = 64) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        img = (frame(h, w, seed=i) * 255.0 + 0.5).astype(np.uint8)
        buf = oiio.ImageBuf(np.ascontiguousarray(img))
        assert buf.write(str(folder / f"plate.{i:04d}.png")), buf.geterror()
    return str(folder / "plate.####.png")


def test_path_job_matches_a_local_conversion(server, address, job_root, tmp_path):
    _write_sequence(job_root / "shot", 5)
    updates = []
    with Client(address) as c:
        job = c.run_job("shot/plate.####.png", "shot/hdr/", start=2, end=4, progress=updates.append)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.done == 3 and job.written == 3
    assert updates and updates[-1].state == pb.JOB_STATE_SUCCEEDED
    out = sorted(os.listdir(job_root / "shot" / "hdr"))
    assert out == ["plate.0002.exr", "plate.0003.exr", "plate.0004.exr"]
    reference("landis").convert(str(job_root / "shot" / "plate.####.png"), tmp_path / "local", start=2, end=4)
    for name in out:
        a, b = read_exr(job_root / "shot" / "hdr" / name), read_exr(tmp_path / "local" / name)
        assert np.array_equal(a.pixels, b.pixels)
    with Client(address) as c:
        with pytest.raises(RemoteError) as ei:  # the frames exist now: neither resume nor overwrite
            c.run_job("shot/plate.####.png", "shot/hdr/", start=2, end=2)
        assert ei.value.code == SC.ALREADY_EXISTS
        again = c.run_job(str(job_root / "shot" / "plate.####.png"), "shot/hdr/", resume=True)
        assert again.skipped == 3 and again.written == 2


def test_job_cancel_and_watch(make_server, tmp_path):
    root = tmp_path / "root"
    _write_sequence(root / "long", 30, h=540, w=960)
    s = make_server(roots=(str(root),), job_workers=1)
    with Client(f"127.0.0.1:{s.port}") as c:
        first = c.submit_job("long/plate.####.png", "long/a/")
        queued = c.submit_job("long/plate.####.png", "long/b/")
        assert c.cancel_job(queued.id).id == queued.id
        states = []
        for j in c.watch_job(first.id, timeout=300):
            states.append(j.state)
            if j.state == pb.JOB_STATE_RUNNING and j.done >= 1:
                c.cancel_job(first.id)
        final = c.get_job(first.id)
        assert final.state == pb.JOB_STATE_CANCELLED and 1 <= final.done < 30
        assert pb.JOB_STATE_RUNNING in states
        assert wait_for(lambda: c.get_job(queued.id).state == pb.JOB_STATE_CANCELLED)
    assert not (root / "long" / "b").exists() or not os.listdir(root / "long" / "b")
    # finished frames are whole EXRs, never partial files
    for name in os.listdir(root / "long" / "a"):
        assert name.endswith(".exr") and not name.startswith(".")
        read_exr(root / "long" / "a" / name)


def test_jobs_refused_without_root(address, make_server):
    s = make_server()
    with Client(f"127.0.0.1:{s.port}") as c:
        with pytest.raises(RemoteError) as ei:
            c.submit_job("/tmp/x.png", "/tmp/out/")
        assert ei.value.code == SC.FAILED_PRECONDITION
        assert not c.server_info().jobs_enabled


def _gate_job_frames(server, allow: int) -> threading.Event:
    """Block the job pipeline's back end before its ``allow + 1``-th frame until the returned
    event is set (the job runs the default model's pipeline for PNG sequences)."""
    pipe = server.job_pipeline(server.config.model, server.default_output_space, None, half=True,
                               compression="zip", mask_layer=False)
    gate, calls, run = threading.Event(), [0], pipe.backend.run

    def gated(x):
        calls[0] += 1
        if calls[0] > allow:
            gate.wait(60)
        return run(x)

    pipe.backend.run = gated
    return gate


def test_job_records_survive_a_restart_and_unfinished_jobs_resume(make_server, tmp_path):
    """--state-dir: a job interrupted by a shutdown runs again when the server restarts (same id,
    finished frames kept, not rewritten); a finished job and a cancelled one come back as they
    ended; a damaged record is skipped."""
    root, state = tmp_path / "root", tmp_path / "state"
    _write_sequence(root / "shot", 8)
    a = make_server(roots=(str(root),), state_dir=str(state))
    with Client(f"127.0.0.1:{a.port}") as c:
        done_job = c.run_job("shot/plate.####.png", "shot/first/")
        gate = _gate_job_frames(a, allow=3)
        job = c.submit_job("shot/plate.####.png", "shot/hdr/")
        assert wait_for(lambda: c.get_job(job.id).done >= 3)
        cancelled = c.submit_job("shot/plate.####.png", "shot/never/")  # queued behind (one job worker)
        c.cancel_job(cancelled.id)
    stopper = threading.Thread(target=a.shutdown, kwargs={"grace": 10.0})
    stopper.start()
    assert wait_for(lambda: a.jobs.get(job.id).cancel.is_set())
    gate.set()
    stopper.join(60)
    out = root / "shot" / "hdr"
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert 3 <= len(kept) < 8 and all(not n.startswith(".") for n in kept)
    (state / "jobs" / "garbage.json").write_text("{not json")
    b = make_server(roots=(str(root),), state_dir=str(state))
    with Client(f"127.0.0.1:{b.port}") as c:
        assert wait_for(lambda: c.get_job(job.id).state == pb.JOB_STATE_SUCCEEDED)
        again = c.get_job(job.id)
        assert again.skipped == len(kept) and again.written == 8 - len(kept) and again.spec.resume
        assert c.get_job(done_job.id).state == pb.JOB_STATE_SUCCEEDED and c.get_job(done_job.id).written == 8
        assert c.get_job(cancelled.id).state == pb.JOB_STATE_CANCELLED
    assert sorted(p.name for p in out.iterdir()) == [f"plate.{i:04d}.exr" for i in range(1, 9)]
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in kept.items())  # not rewritten
    assert not (root / "shot" / "never").exists() or not os.listdir(root / "shot" / "never")


def test_a_job_running_when_the_server_died_resumes(make_server, tmp_path):
    """What a crash leaves: the record still says RUNNING (snapshot of --state-dir taken while the
    job runs). A server started on that snapshot runs the job again with resume."""
    import shutil

    root, state = tmp_path / "root", tmp_path / "state"
    _write_sequence(root / "shot", 6)
    a = make_server(roots=(str(root),), state_dir=str(state))
    gate = _gate_job_frames(a, allow=2)
    with Client(f"127.0.0.1:{a.port}") as c:
        job = c.submit_job("shot/plate.####.png", "shot/hdr/")
        assert wait_for(lambda: c.get_job(job.id).done >= 2)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(state, snapshot)
    rec = json.loads((snapshot / "jobs" / f"{job.id}.json").read_text())
    assert rec["state"] == "JOB_STATE_RUNNING" and not rec["resume_on_start"]
    gate.set()
    a.shutdown(grace=10.0)
    b = make_server(roots=(str(root),), state_dir=str(snapshot))
    with Client(f"127.0.0.1:{b.port}") as c:
        assert wait_for(lambda: c.get_job(job.id).state == pb.JOB_STATE_SUCCEEDED)
    assert sorted(p.name for p in (root / "shot" / "hdr").iterdir()) == [f"plate.{i:04d}.exr" for i in range(1, 7)]
