"""A chunk killed midway (SIGKILL, as when a worker dies) and run again completes correctly:
the frames it had finished are kept (``--resume``), the rest are written, and every EXR equals a
plain ``hdr-video`` run byte for byte. Uses the default network, hdrcnn-lite."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
import pytest
from farm_helpers import assert_same_bytes, exe, exr_names, hdr_video, make_bundle, run_bundle, wait_for

pytestmark = pytest.mark.timeout(300)

FRAMES = 12


@pytest.fixture(scope="module")
def larger_clip(tmp_path_factory):
    """Frames large enough (256x160) that hdrcnn-lite takes a visible time over each."""
    from hdrlift.engine.sample import write_sample

    d = tmp_path_factory.mktemp("clip")
    return write_sample(d / "plate.mp4", width=256, height=160, frames=FRAMES, fps=24)


def _hdr_video_pid(openjd_pid: int) -> int | None:
    """The task's process once it runs hdr-video (hdrlift-farm task execs it)."""
    try:
        for child in psutil.Process(openjd_pid).children(recursive=True):
            try:
                if any("hdr-video" in part for part in child.cmdline()):
                    return child.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    except psutil.NoSuchProcess:
        pass
    return None


def test_chunk_killed_midway_then_rerun(larger_clip, tmp_path):
    out = tmp_path / "out"
    bundle = make_bundle(larger_clip, out / "plate.####.exr", tmp_path / "bundle", "--chunk", str(FRAMES),
                         "--model", "hdrcnn-lite", "--backend", "torch", "--server", "none")
    template, values = bundle / "template.yaml", f"file://{bundle / 'openjd-params.json'}"
    task = ["--step", "Reconstruct", "--task-param", f"Frames=1-{FRAMES}"]

    job = subprocess.Popen([exe("openjd"), "run", str(template), "-p", values, *task],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the moment the chunk's first EXR is complete (renamed into place), kill its hdr-video
        wait_for(lambda: exr_names(out) if out.is_dir() else None, 240, "the chunk's first EXR", step=0.005)
        pid = wait_for(lambda: _hdr_video_pid(job.pid), 30, "the task's hdr-video process", step=0.005)
        os.kill(pid, signal.SIGKILL)
        done_before = exr_names(out)
        log, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0, log  # the task failed: the scheduler would run it again
    assert 1 <= len(done_before) < FRAMES, f"the kill came too late to test anything: {done_before}"
    kept = {name: (out / name).stat().st_ino for name in exr_names(out)}

    r = run_bundle(bundle, *task)
    assert r.returncode == 0, r.stdout
    assert f"--frames 1-{FRAMES} --resume" in r.stdout
    # the frames finished before the kill were kept, not written again
    assert all((out / name).stat().st_ino == ino for name, ino in kept.items())

    ref = tmp_path / "ref"
    hdr_video(larger_clip, ref / "plate.####.exr", "--model", "hdrcnn-lite", "--backend", "torch")
    assert_same_bytes(out, ref, FRAMES)  # also: no temporary file of the killed run is left
