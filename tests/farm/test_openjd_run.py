"""OpenJD job bundles run by the real ``openjd run`` (openjd-cli) on the sample clip.

Each chunk's EXRs must equal, byte for byte, the frames of one plain ``hdr-video`` run (same
input path, model, back end; with servers, the same server address, which the EXR header names).
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import OpenImageIO as oiio
import pytest
from farm_helpers import (assert_same_bytes, exr_names, hdr_video, make_bundle, openjd, process_gone,
                          run_bundle, session_server_pids, wait_for)

pytestmark = pytest.mark.timeout(300)


def chunks_run(output: str, param: str) -> list[str]:
    return re.findall(rf"{param}\((?:CHUNK\[INT\]|INT)\) = (\S+)", output)


def hdr_video_frames(output: str) -> list[str]:
    """The ``--frames A-B --resume`` of every hdr-video command the tasks ran."""
    return re.findall(r"hdrlift-farm: frames \S+: \S*hdr-video .* --frames (\S+) --resume", output)


def test_chunked_bundle_matches_one_hdr_video_run(clip, reference_icrf, tmp_path):
    bundle = make_bundle(clip, tmp_path / "out" / "shot.####.exr", tmp_path / "bundle",
                         "--chunk", "7", "--model", "inverse-crf", "--server", "none")
    assert openjd("check", bundle / "template.yaml").returncode == 0
    r = run_bundle(bundle)
    assert r.returncode == 0, r.stdout
    # CHUNK[INT]: openjd splits 1-12 into contiguous chunks of at most 7 frames, one task each
    # (openjd-cli 0.8 balances them: 1-6, 7-12)
    chunks = chunks_run(r.stdout, "Frames")
    assert len(chunks) == 2 and chunks == hdr_video_frames(r.stdout), r.stdout
    covered = [f for c in chunks for f in range(int(c.split("-")[0]), int(c.split("-")[-1]) + 1)]
    assert covered == list(range(1, 13))
    assert all(int(c.split("-")[-1]) - int(c.split("-")[0]) < 7 for c in chunks)
    assert "Chunks run: 2" in r.stdout
    assert_same_bytes(tmp_path / "out", reference_icrf, 12)


def test_plain_int_fallback_matches_one_hdr_video_run(clip, reference_icrf, tmp_path):
    bundle = make_bundle(clip, tmp_path / "out" / "shot.####.exr", tmp_path / "bundle",
                         "--chunk", "8", "--model", "inverse-crf", "--server", "none", "--no-task-chunking")
    # a scheduler without any extension accepts this template, but not the chunked one
    assert openjd("check", "--extensions", "", bundle / "template.yaml").returncode == 0
    chunked = make_bundle(clip, tmp_path / "out2" / "shot.####.exr", tmp_path / "chunked", "--model", "inverse-crf")
    refused = openjd("check", "--extensions", "", chunked / "template.yaml")
    assert refused.returncode != 0 and "requires the TASK_CHUNKING extension" in refused.stdout

    r = run_bundle(bundle)
    assert r.returncode == 0, r.stdout
    assert chunks_run(r.stdout, "ChunkStart") == ["1", "9"]
    assert hdr_video_frames(r.stdout) == ["1-8", "9-12"]  # the task works out each chunk's end
    assert_same_bytes(tmp_path / "out", reference_icrf, 12)


def test_session_server_loads_the_model_once_and_stops(clip, tmp_path):
    """Server = session: the step environment starts one hdrlift-serve for the worker session, every
    task sends its frames to it, and the environment's exit stops it (no process left)."""
    frames = "1-8"
    bundle = make_bundle(clip, tmp_path / "out" / "shot.####.exr", tmp_path / "bundle", "--frames", frames,
                         "--chunk", "4", "--model", "hdrcnn-lite", "--backend", "torch")
    r = run_bundle(bundle)
    assert r.returncode == 0, r.stdout
    sup, srv, address = session_server_pids(r.stdout)
    assert f"openjd_env: HDRLIFT_FARM_SERVER={address}" in r.stdout
    assert r.stdout.count("hdrlift-farm: starting") == 1  # one server for the session's two tasks
    assert hdr_video_frames(r.stdout) == ["1-4", "5-8"]
    assert r.stdout.count(f"--server {address}") == 2
    assert f"hdrlift-serve pid {srv} stopped" in r.stdout
    assert re.search(r'"event": "stopped", "frames": 8\b', r.stdout), r.stdout  # all frames went through it
    wait_for(lambda: process_gone(srv) and process_gone(sup), 30, "the session's server to be gone")

    # the same pixels and header as a local run of the model; the header also names the server
    ref = tmp_path / "ref"
    hdr_video(clip, ref / "shot.####.exr", "--model", "hdrcnn-lite", "--backend", "torch", "--frames", frames)
    names = exr_names(ref)
    assert len(names) == 8 and exr_names(tmp_path / "out") == names
    for name in names:
        a, b = oiio.ImageInput.open(str(ref / name)), oiio.ImageInput.open(str(tmp_path / "out" / name))
        try:
            attrs_a = {p.name: p.value for p in a.spec().extra_attribs}
            attrs_b = {p.name: p.value for p in b.spec().extra_attribs}
            assert attrs_b.pop("hdrlift:server") == address
            assert attrs_a == attrs_b
            assert np.array_equal(a.read_image("half"), b.read_image("half"))
        finally:
            a.close()
            b.close()


def test_external_servers_match_one_hdr_video_run_byte_for_byte(clip, external_server, tmp_path):
    """--server HOST:PORT: no session server; tasks use the given servers."""
    bundle = make_bundle(clip, tmp_path / "out" / "shot.####.exr", tmp_path / "bundle", "--frames", "3-10",
                         "--chunk", "4", "--model", "inverse-crf", "--server", external_server)
    r = run_bundle(bundle)
    assert r.returncode == 0, r.stdout
    assert f"no session server: tasks use {external_server}" in r.stdout
    assert hdr_video_frames(r.stdout) == ["3-6", "7-10"]
    ref = tmp_path / "ref"
    hdr_video(clip, ref / "shot.####.exr", "--model", "inverse-crf", "--frames", "3-10", "--server", external_server)
    assert_same_bytes(tmp_path / "out", ref, 8)


def test_paths_are_mapped_on_the_worker(clip, tmp_path):
    """Submitted from one machine, run on another: the PATH parameters (input, output folder) hold
    the artist's paths and the worker's path mapping rules rewrite them (here with openjd run's
    --path-mapping-rules; Deadline Cloud's workers apply their storage profiles' or job
    attachments' rules the same way)."""
    artist, worker = tmp_path / "artist", tmp_path / "worker"
    (artist / "plates").mkdir(parents=True)
    shutil.copy(clip, artist / "plates" / "plate.mp4")
    bundle = make_bundle(artist / "plates" / "plate.mp4", artist / "renders" / "sh010.####.exr",
                         tmp_path / "bundle", "--frames", "1-4", "--chunk", "4", "--model", "inverse-crf",
                         "--server", "none")
    shutil.move(artist, worker)  # the artist's disk, as the farm mounts it
    rules = {"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "POSIX", "source_path": str(artist), "destination_path": str(worker)}]}
    r = run_bundle(bundle, "--path-mapping-rules", json.dumps(rules))
    assert r.returncode == 0, r.stdout
    assert f"{worker}/plates/plate.mp4" in r.stdout and str(artist) not in r.stdout.split("Running job", 1)[1]
    assert not artist.exists()
    ref = tmp_path / "ref"
    hdr_video(worker / "plates" / "plate.mp4", ref / "sh010.####.exr", "--model", "inverse-crf", "--frames", "1-4")
    assert_same_bytes(worker / "renders", ref, 4)
