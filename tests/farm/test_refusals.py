"""Bad parameters are refused: by hdrlift-farm when it writes the job (one line,
``hdrlift-farm: error: ...``, non-zero exit, nothing written), and by the template itself
(minValue, allowedValues, range rules) when ``openjd run`` creates the job."""

from __future__ import annotations

import pytest
from farm_helpers import farm, make_bundle, openjd, run_bundle

from hdrlift.engine.farm.cli import main

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("args, message", [
    (["--chunk", "0"], "--chunk must be a positive number of frames, got 0"),
    (["--chunk", "-3"], "--chunk must be a positive number of frames, got -3"),
    (["--frames", "10-5"], "frame range '10-5' ends before it starts"),
    (["--frames", "0-5"], "frame numbers start at 1, got '0-5'"),
    (["--frames", "5-40"], "frames 5-40 are outside the input's frames 1-12"),
    (["--frames", "a-b"], "frame range must be START-END or N, got 'a-b'"),
    (["--server", "gpu1"], "--server must be session, none or HOST:PORT[,HOST:PORT...], got 'gpu1'"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "ahdrnet"], "model 'ahdrnet' cannot convert a video frame by frame here"),
    (["--backend", "cuda"], "--backend must be auto, torch, onnxruntime or tensorrt, got 'cuda'"),
    (["--device", "auto"], "--device must be cpu, cuda, cuda:N or mps, got 'auto'"),
])
def test_generation_refuses_bad_parameters(clip, tmp_path, capsys, args, message):
    bundle = tmp_path / "bundle"
    rc = main(["openjd", str(clip), str(tmp_path / "out" / "shot.####.exr"), "--bundle", str(bundle), *args])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("hdrlift-farm: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not bundle.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("output, message", [
    ("out/shot.exr", "output pattern 'out/shot.exr' has no frame number field (#### or %04d)"),
    ("out.####/shot.exr", "the frame field (#### or %04d) must be in the file name"),
    ("out/shot.####.png", "must end in .exr"),
])
def test_generation_refuses_output_without_frame_field(clip, tmp_path, capsys, monkeypatch, output, message):
    monkeypatch.chdir(tmp_path)
    assert main(["openjd", str(clip), output, "--bundle", "bundle"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hdrlift-farm: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bundle").exists()


def test_generation_refuses_frames_already_in_the_output(clip, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shot.0004.exr").write_bytes(b"an earlier run")
    args = ["openjd", str(clip), str(out / "shot.####.exr"), "--bundle", str(tmp_path / "bundle")]
    assert main([*args, "--frames", "3-6"]) == 2
    err = capsys.readouterr().err
    assert err == (f"hdrlift-farm: error: 1 of frames 3-6 already exist in {out} (e.g. shot.0004.exr); the tasks "
                   "run with --resume and would keep them: remove them, choose another output, or pass "
                   "--keep-existing to complete an earlier run\n")
    assert main([*args, "--frames", "5-6"]) == 0  # frames outside the job do not matter
    assert main([*args, "--frames", "3-6", "--keep-existing"]) == 0


def test_generation_refuses_missing_input_in_one_line(tmp_path):
    """The installed command: exit status 2 and one line on stderr."""
    r = farm("openjd", tmp_path / "nope.mp4", tmp_path / "out", "--bundle", tmp_path / "bundle")
    assert r.returncode == 2
    assert r.stderr == f"hdrlift-farm: error: {tmp_path / 'nope.mp4'}: no such file\n"
    assert not (tmp_path / "bundle").exists()
    r = farm("openjd", tmp_path / "nope.mp4", tmp_path / "out", "--chunk", "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("hdrlift-farm: error: argument --chunk: invalid int value: 'x'")


@pytest.fixture(scope="module")
def bundle(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("refusals")
    return make_bundle(clip, d / "out" / "shot.####.exr", d / "bundle", "--chunk", "4", "--model", "inverse-crf",
                       "--server", "none")


@pytest.mark.parametrize("values, message", [
    (["ChunkSize=0"], "Value (0) for parameter ChunkSize must be at least 1."),
    (["FrameStart=0"], "Value (0) for parameter FrameStart must be at least 1."),
    (["FrameStart=9", "FrameEnd=3"], "a descending range must have a negative step"),
    (["Model=nope"], "Parameter Model value (nope) not in allowedValues."),
    (["Backend=cuda"], "Parameter Backend value (cuda) not in allowedValues."),
    (["OutputName=x"], "for parameter OutputName value must be at least 5 characters"),
    (["TargetChunkSeconds=-1"], "targetRuntimeSeconds:\n\tInput should be greater than or equal to 0"),
])
def test_openjd_refuses_bad_values(bundle, values, message):
    """Refused when the job is created from the template (as at submission): no task runs."""
    r = run_bundle(bundle, *[a for v in values for a in ("-p", v)])
    assert r.returncode != 0
    assert message in r.stdout, r.stdout
    assert "Running Task" not in r.stdout


def test_openjd_check_passes_the_generated_templates(bundle, clip, tmp_path):
    assert "passes validation checks" in openjd("check", bundle / "template.yaml").stdout
    gpu = make_bundle(clip, tmp_path / "o" / "s.####.exr", tmp_path / "gpu", "--device", "cuda", "--no-task-chunking")
    assert "amount.worker.gpu" in (gpu / "template.yaml").read_text()
    assert "passes validation checks" in openjd("check", "--extensions", "", gpu / "template.yaml").stdout


def test_bad_server_value_fails_the_session_before_any_task(bundle):
    r = run_bundle(bundle, "-p", "Server=gpu1")
    assert r.returncode != 0
    assert "hdrlift-farm: error: --server must be session, none or HOST:PORT" in r.stdout
    assert "Running Task" not in r.stdout


def test_missing_input_fails_the_task_with_one_clear_line(bundle, tmp_path):
    missing = tmp_path / "moved.mp4"
    r = run_bundle(bundle, "-p", f"Input={missing}", "--maximum-tasks", "1")
    assert r.returncode != 0
    assert f"hdr-video: error: {missing}: no such file" in r.stdout, r.stdout
    assert "exited with code: 2 " in r.stdout  # hdr-video's status for bad input fails the task
