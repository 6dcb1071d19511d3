"""The bundle as AWS Deadline Cloud's own client reads it at ``deadline bundle submit``, up to the
CreateJob request: parameter values, their API form, and the job attachments (the input file
uploaded, the output folder downloaded). Nothing is sent: there is no AWS account here, so the
service-side steps (CreateJob, the TASK_CHUNKING check, workers) are not run."""

from __future__ import annotations

import pytest
from farm_helpers import make_bundle

pytest.importorskip("deadline.client", reason="the deadline package (AWS Deadline Cloud client) is not installed")

from deadline.client.job_bundle.parameters import (  # noqa: E402
    apply_job_parameters,
    merge_queue_job_parameters,
    read_job_bundle_parameters,
)
from deadline.client.job_bundle.submission import AssetReferences, split_parameter_args  # noqa: E402


def _create_job_parameters(bundle, overrides=()):
    """What ``deadline bundle submit BUNDLE -p NAME=VALUE...`` sends as CreateJob parameters, and the
    job attachments it would upload and download (a queue without queue parameters)."""
    merged = merge_queue_job_parameters(queue_id="queue-test", job_parameters=read_job_bundle_parameters(str(bundle)),
                                        queue_parameters=[])
    refs = AssetReferences()
    apply_job_parameters([{"name": k, "value": v} for k, v in overrides], str(bundle), merged, refs)
    app, job = split_parameter_args(merged, str(bundle))
    return app, job, refs


def test_deadline_client_submits_the_bundle_with_job_attachments(clip, tmp_path):
    out = tmp_path / "renders"
    bundle = make_bundle(clip, out / "sh010.####.exr", tmp_path / "bundle", "--chunk", "6", "--model", "inverse-crf",
                         "--device", "cuda", "--hdrlift-farm", "/opt/hdrlift/bin/hdrlift-farm")
    app, job, refs = _create_job_parameters(bundle, [("ChunkSize", "24")])
    assert app == {}
    assert job == {
        "Input": {"path": str(clip)}, "OutputDir": {"path": str(out)}, "OutputName": {"string": "sh010.####.exr"},
        "FrameStart": {"int": "1"}, "FrameEnd": {"int": "12"}, "ChunkSize": {"int": "24"},
        "TargetChunkSeconds": {"int": "0"}, "Model": {"string": "inverse-crf"},
        "OutputColorspace": {"string": "ACEScg"}, "Device": {"string": "cuda"}, "Backend": {"string": "auto"},
        "Server": {"string": "session"}, "HdrliftFarm": {"string": "/opt/hdrlift/bin/hdrlift-farm"}}
    # job attachments: the clip goes up, the output folder comes back; nothing else is moved
    assert refs.input_filenames == {str(clip)} and not refs.input_directories
    assert refs.output_directories == {str(out)}


def test_deadline_client_reads_a_sequence_bundle(tmp_path):
    """An image sequence: its folder is the job attachment, the file pattern a string."""
    import numpy as np
    import OpenImageIO as oiio

    plates = tmp_path / "plates"
    plates.mkdir()
    for n in (1001, 1002, 1003):
        oiio.ImageBuf(np.full((8, 8, 3), n % 7 / 7, np.float32)).write(str(plates / f"plate.{n}.png"), "uint8")
    bundle = make_bundle(plates / "plate.####.png", tmp_path / "hdr", tmp_path / "bundle", "--chunk", "2",
                         "--no-task-chunking")
    app, job, refs = _create_job_parameters(bundle)
    assert job["InputDir"] == {"path": str(plates)} and job["InputName"] == {"string": "plate.####.png"}
    assert job["OutputName"] == {"string": "plate.####.exr"}
    assert (job["FrameStart"], job["FrameEnd"]) == ({"int": "1001"}, {"int": "1003"})
    assert refs.input_directories == {str(plates)} and refs.output_directories == {str(tmp_path / "hdr")}
