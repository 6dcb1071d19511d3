"""The model card tool (`python -m hdrlift.training.card`): a recipe of CPU and GPU stages, the
resolved loss, the verdict against the classical operators, and nothing replaced on bad input."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from hdrlift.training import card


def _run(folder: pathlib.Path, *, loss: str, resolved: str, steps: int, best: int, init_from=None,
         env: dict | None = None) -> pathlib.Path:
    folder.mkdir(parents=True)
    cfg = {"model": "hdrcnn-lite", "loss": loss, "loss_resolved": resolved, "iterations": steps + 100,
           "patch": 64, "batch": 4, "lr": 1e-4, "data": ".data/hdri-pack.npz" if env else None,
           "init_from": init_from}
    (folder / "config.json").write_text(json.dumps(cfg))
    log = [{"step": s, "loss": 0.1, "elapsed_s": s / 10} for s in range(0, steps - 5, 50)]  # last steps unlogged
    (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log))
    weights = {"w": torch.arange(4, dtype=torch.float32)}
    save_file(weights, str(folder / "best.safetensors"), metadata={"step": str(best)})
    save_file(weights, str(folder / "last.safetensors"), metadata={"step": str(steps)})
    if env:
        (folder / "env.json").write_text(json.dumps(env))
    return folder


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    out = tmp_path / "weights"
    monkeypatch.setattr(card, "WEIGHTS_DIR", out)
    return out


def test_card_for_cpu_then_gpu_stages(tmp_path, weights_dir):
    gpu = {"gpu": "Test GPU 80GB", "cpu_count": 16, "torch": "2.x+cu", "pack": {"size": 512}}
    cpu_run = _run(tmp_path / "cpu", loss="psnr", resolved="psnr", steps=300, best=250)
    gpu_run = _run(tmp_path / "gpu", loss="auto", resolved="log_l1", steps=420, best=400,
                   init_from=".data/init/hdrcnn-lite.safetensors", env=gpu)
    ev = {"overall": {"hdrcnn-lite": {"psnr_mu": 45.0, "pu21_psnr": 41.0, "psnr_l": 30.0, "clipped_stops": 0.30},
                      "inverse-crf": {"psnr_mu": 44.0, "pu21_psnr": 42.0, "psnr_l": 29.0, "clipped_stops": 0.50},
                      "akyuz": {"psnr_mu": 35.0, "pu21_psnr": 36.0, "psnr_l": 28.0, "clipped_stops": 0.45}}}
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    assert card.main(["--model", "hdrcnn-lite", "--run", str(gpu_run), "--stage", str(cpu_run),
                      "--eval", str(tmp_path / "ev.json"), "--eval-cmd", "hdrlift-eval ..."]) == 0
    text = (weights_dir / "hdrcnn-lite.md").read_text()
    assert (weights_dir / "hdrcnn-lite.safetensors").read_bytes() == (gpu_run / "best.safetensors").read_bytes()
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    # the CPU stage handed its best weights on (the GPU stage started from a copy, not last.safetensors)
    assert "CPU (2 cores)" in rows[0] and "best val, step 250" in rows[0] and "| 300 (400) |" in rows[0]
    # "auto" shows what it resolved to; the step count comes from last.safetensors past the last log line
    assert "GPU (Test GPU 80GB)" in rows[1] and "`log_l1`" in rows[1] and "| 420 (520) |" in rows[1]
    assert "Test GPU 80GB, 16 CPU cores" in text and "downsized to 512 px" in text
    assert "* `psnr_mu`: better than `inverse-crf` by 1.000" in text
    assert "* `pu21_psnr`: worse than `inverse-crf` by 1.000" in text
    assert "* `clipped_stops`: better than `akyuz` by 0.150" in text
    assert "kept exactly" not in text or "exactly as the inverse sRGB curve" in text


def test_card_changes_nothing_when_an_input_is_missing(tmp_path, weights_dir, capsys):
    run = _run(tmp_path / "r", loss="psnr", resolved="psnr", steps=100, best=100)
    weights_dir.mkdir()
    (weights_dir / "hdrcnn-lite.safetensors").write_bytes(b"shipped")
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--eval", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert (weights_dir / "hdrcnn-lite.safetensors").read_bytes() == b"shipped"
    assert not (weights_dir / "hdrcnn-lite.md").exists()
    assert sorted(p.name for p in weights_dir.iterdir()) == ["hdrcnn-lite.safetensors"]  # no temporaries
