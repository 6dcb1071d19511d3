"""The prepared device run (bench/gpu_run.sh -> bench/bench_gpu_4k.py) works end to end: its
dry run at 256 x 144 on the CPU, every step, nothing failed, two files in $OUT. What a GPU session
then runs is the same script at 4K (docs/benchmarks.md, "4K on a GPU (issue 18)")."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_run_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, HDRLIFT_GPU_DEVICE="cpu",
               HDRLIFT_GPU_SIZE="256x144", HDRLIFT_GPU_FRAMES="4", HDRLIFT_GPU_WORKERS="2", HDRLIFT_GPU_TIMED="2",
               HDRLIFT_SITE=str(tmp_path / "site"), HDRLIFT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_run.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "run.log"]
    res = json.loads((out / "results.json").read_text())
    steps = res["steps"]
    assert list(steps) == ["env", "clip", "network", "device_colour", "decode", "exr", "pipeline"]
    for name, rec in steps.items():
        assert "error" not in rec and "skipped" not in rec, (name, rec)
    assert all("error" not in v and v["network_ms"] > 0 for v in steps["network"]["variants"])
    pipe = {v["name"]: v for v in steps["pipeline"]["variants"]}
    assert set(pipe) == {"today", "device"}
    assert all("error" not in v and v["frames"] == 4 and v["fps"] > 0 for v in pipe.values())
    assert "device colour" in pipe["device"]["where"]
    assert pipe["device"]["max_half_steps_vs_today"] <= 1.0
    assert "gpu_run.sh: exit 0" in (out / "run.log").read_text()
